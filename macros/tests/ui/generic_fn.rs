use stevedore::task;

#[task]
async fn generic<T: Clone>(value: T) -> u8 {
    let _ = value;
    0
}

fn main() {}
