use stevedore::task;

#[task(limit = "partner", rate_limit = "10/s")]
async fn call_partner() {}

fn main() {}
