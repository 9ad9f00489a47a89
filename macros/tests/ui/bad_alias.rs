use stevedore::task;

#[task(aliases = [old_name])]
async fn noop() {}

fn main() {}
