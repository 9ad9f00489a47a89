use stevedore::task;

#[task(priority = 3)]
async fn noop() {}

fn main() {}
