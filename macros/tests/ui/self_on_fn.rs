use stevedore::task;

struct Jobs;

impl Jobs {
    #[task]
    fn run(&self, n: u32) -> u32 {
        n
    }
}

fn main() {}
