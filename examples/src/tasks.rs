//! The app's tasks.

use std::collections::HashMap;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use stevedore::{task, TaskContext, TaskError};

/// Referenced by [`crate::link`].
pub fn link() {}

/// Thumbnails this node has rendered, keyed by size: what `clear_cache` empties.
static THUMBNAIL_CACHE: Mutex<Option<HashMap<(u32, u32), u64>>> = Mutex::new(None);

/// What `render_thumbnail` returns.
#[derive(Debug, Serialize, Deserialize)]
pub struct Thumbnail {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// A checksum of the rendered pixels.
    pub checksum: u64,
    /// Whether it came from this node's cache.
    pub cached: bool,
}

/// CPU work: renders a `width` x `height` gradient and checksums it. A plain `fn`, so it runs
/// on the blocking thread pool and never stalls the worker's async runtime.
#[task(name = "images.render_thumbnail", queue = "default")]
pub fn render_thumbnail(width: u32, height: u32) -> Result<Thumbnail, TaskError> {
    if width == 0 || height == 0 || width > 4096 || height > 4096 {
        return Err(TaskError::fatal(format!(
            "bad size {width}x{height}: use 1..=4096"
        )));
    }
    let mut cache = THUMBNAIL_CACHE
        .lock()
        .map_err(|_| TaskError::new("cache lock poisoned"))?;
    let cache = cache.get_or_insert_with(HashMap::new);
    if let Some(&checksum) = cache.get(&(width, height)) {
        return Ok(Thumbnail {
            width,
            height,
            checksum,
            cached: true,
        });
    }
    let checksum = (0..height)
        .flat_map(|y| (0..width).map(move |x| (x * 255 / width) ^ (y * 255 / height)))
        .fold(0xcbf2_9ce4_8422_2325u64, |hash, pixel| {
            (hash ^ u64::from(pixel)).wrapping_mul(0x0100_0000_01b3)
        });
    cache.insert((width, height), checksum);
    Ok(Thumbnail {
        width,
        height,
        checksum,
        cached: false,
    })
}

/// I/O work: writes a report of `lines` lines to a temporary file, reads it back, and returns
/// its size in bytes; reports its progress line by line and logs what it wrote (both kept with
/// its record: `stevedore task ID`, the dashboard's task page).
#[task(name = "reports.write_report")]
pub async fn write_report(ctx: TaskContext, title: String, lines: u32) -> Result<u64, TaskError> {
    let mut body = String::new();
    for n in 1..=lines {
        body.push_str(&format!("{title}: line {n}\n"));
        ctx.set_progress(
            u64::from(n),
            u64::from(lines),
            format!("line {n} of {title}"),
        )
        .await?;
    }
    let path =
        std::env::temp_dir().join(format!("stevedore-report-{}.txt", uuid_like(&title, lines)));
    tokio::fs::write(&path, &body).await?;
    let size = tokio::fs::metadata(&path).await?.len();
    tokio::fs::remove_file(&path).await?;
    tracing::info!(lines, bytes = size, "report {title} written");
    Ok(size)
}

fn uuid_like(title: &str, lines: u32) -> String {
    let hash = title.bytes().fold(u64::from(lines), |h, b| {
        h.wrapping_mul(31).wrapping_add(u64::from(b))
    });
    format!("{hash:x}-{}", std::process::id())
}

/// Broadcast: empties this node's thumbnail cache; returns the node and how many entries went.
#[task(name = "cache.clear")]
pub async fn clear_cache(ctx: TaskContext) -> Result<(String, usize), TaskError> {
    let cleared = THUMBNAIL_CACHE
        .lock()
        .map_err(|_| TaskError::new("cache lock poisoned"))?
        .as_mut()
        .map_or(0, |cache| {
            let n = cache.len();
            cache.clear();
            n
        });
    Ok((ctx.node().to_owned(), cleared))
}
