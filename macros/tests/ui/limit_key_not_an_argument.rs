use stevedore::task;

#[task(concurrency = 2, limit_key = "customer")]
async fn sync_tenant(tenant: String) -> String {
    tenant
}

fn main() {}
