use stevedore::task;

#[task(timeout = "soon")]
async fn noop() {}

fn main() {}
