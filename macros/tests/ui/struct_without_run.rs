use stevedore::task;

#[derive(Default)]
struct Worker;

#[task]
impl Worker {
    fn execute(&self) {}
}

fn main() {}
