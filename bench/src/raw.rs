//! The raw Redis limit for the same work, with no framework: per task one XADD, a share of an
//! XREADGROUP COUNT 100, one outcome record write with its expiry, and a share of XACK + XDEL;
//! pipelined, on three connections as stevedore uses (publisher, reader, settler).

use std::time::{Duration, Instant};

use tokio::sync::mpsc;

const STREAM: &str = "raw:{q}:stream";

/// Tasks per second through the raw cycle for `n` tasks of `payload`.
pub async fn raw_cycle(url: &str, n: usize, payload: &[u8]) -> anyhow::Result<f64> {
    let client = redis::Client::open(url)?;
    let mut setup = client.get_multiplexed_async_connection().await?;
    let _: redis::RedisResult<()> = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(STREAM)
        .arg("g")
        .arg("0")
        .arg("MKSTREAM")
        .query_async(&mut setup)
        .await;
    let started = Instant::now();
    let producer = {
        let mut conn = client.get_multiplexed_async_connection().await?;
        let payload = payload.to_vec();
        tokio::spawn(async move {
            for chunk in (0..n).collect::<Vec<_>>().chunks(1000) {
                let mut pipe = redis::pipe();
                for _ in chunk {
                    pipe.cmd("XADD")
                        .arg(STREAM)
                        .arg("*")
                        .arg("m")
                        .arg(&payload)
                        .ignore();
                }
                pipe.query_async::<()>(&mut conn).await?;
            }
            anyhow::Ok(())
        })
    };
    let (batches, mut to_settle) = mpsc::unbounded_channel::<Vec<String>>();
    let config =
        redis::AsyncConnectionConfig::new().set_response_timeout(Some(Duration::from_secs(10)));
    let mut reader = client
        .get_multiplexed_async_connection_with_config(&config)
        .await?;
    let settler = {
        let mut conn = client.get_multiplexed_async_connection().await?;
        tokio::spawn(async move {
            let mut settled = 0;
            while settled < n {
                let Some(ids) = to_settle.recv().await else {
                    break;
                };
                let mut pipe = redis::pipe();
                for id in &ids {
                    let key = format!("raw:{{t:{id}}}:record");
                    pipe.cmd("HSET")
                        .arg(&key)
                        .arg("task")
                        .arg("succeeded-record-of-about-this-size")
                        .ignore();
                    pipe.cmd("PEXPIRE").arg(&key).arg(60_000).ignore();
                }
                pipe.cmd("XACK").arg(STREAM).arg("g").arg(&ids).ignore();
                pipe.cmd("XDEL").arg(STREAM).arg(&ids).ignore();
                pipe.query_async::<()>(&mut conn).await?;
                settled += ids.len();
            }
            anyhow::Ok(())
        })
    };
    let mut read = 0;
    while read < n {
        let reply: redis::streams::StreamReadReply = redis::cmd("XREADGROUP")
            .arg("GROUP")
            .arg("g")
            .arg("c")
            .arg("COUNT")
            .arg(100)
            .arg("BLOCK")
            .arg(1000)
            .arg("STREAMS")
            .arg(STREAM)
            .arg(">")
            .query_async(&mut reader)
            .await?;
        let ids: Vec<String> = reply
            .keys
            .into_iter()
            .flat_map(|k| k.ids)
            .map(|e| e.id)
            .collect();
        read += ids.len();
        if !ids.is_empty() {
            batches.send(ids)?;
        }
    }
    producer.await??;
    settler.await??;
    Ok(n as f64 / started.elapsed().as_secs_f64())
}
