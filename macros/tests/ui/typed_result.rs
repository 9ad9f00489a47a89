use stevedore::task;

#[task]
async fn add(a: i64, b: i64) -> i64 {
    a + b
}

async fn misread(client: &stevedore::Client) -> stevedore::Result<()> {
    let handle = add::delay(client, 1, 2).await?;
    let text: String = handle.get(std::time::Duration::from_secs(1)).await?;
    println!("{text}");
    Ok(())
}

fn main() {}
