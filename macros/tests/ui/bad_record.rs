use stevedore::task;

#[task(record = "successes")]
async fn quiet() {}

fn main() {}
