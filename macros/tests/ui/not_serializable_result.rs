use stevedore::task;

struct Opaque;

#[task]
fn makes_opaque() -> Opaque {
    Opaque
}

fn main() {}
