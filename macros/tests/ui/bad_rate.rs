use stevedore::task;

#[task(rate_limit = "100/d")]
async fn call_partner() {}

fn main() {}
