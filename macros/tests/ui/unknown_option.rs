use stevedore::task;

#[task(retries = 3)]
async fn noop() {}

fn main() {}
