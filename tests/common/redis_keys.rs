//! Test key prefixes on the shared Redis, and their cleanup: the fan-out keeps replay
//! logs (streams) and a tenant set under its prefix, which must not pile up run after run.

/// The shared test Redis (`FLEETWIRE_TEST_REDIS_URL`, default `redis://127.0.0.1:6379/`).
pub fn redis_url() -> String {
    std::env::var("FLEETWIRE_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379/".to_owned())
}

/// Deletes every key under `<prefix>:` (SCAN + DEL: never FLUSHALL on a shared Redis).
pub fn delete_prefix(url: &str, prefix: &str) {
    use deadpool_redis::redis;
    let Ok(mut conn) = redis::Client::open(url).and_then(|c| c.get_connection()) else {
        return; // Nothing to clean where nothing answers.
    };
    let mut cursor: u64 = 0;
    loop {
        let Ok((next, keys)) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(format!("{prefix}:*"))
            .arg("COUNT")
            .arg(1000)
            .query::<(u64, Vec<String>)>(&mut conn)
        else {
            return;
        };
        if !keys.is_empty() {
            let _ = redis::cmd("DEL").arg(&keys).query::<i64>(&mut conn);
        }
        if next == 0 {
            return;
        }
        cursor = next;
    }
}

/// A key prefix no other test (or run) uses; its keys are deleted when it is dropped.
pub struct TestPrefix {
    prefix: String,
    url: String,
}

impl TestPrefix {
    /// `fwtest:<random>` on the shared test Redis.
    pub fn new() -> Self {
        Self::on(&redis_url())
    }

    /// `fwtest:<random>` on the Redis at `url`.
    pub fn on(url: &str) -> Self {
        Self {
            prefix: format!("fwtest:{:016x}", rand::random::<u64>()),
            url: url.to_owned(),
        }
    }
}

impl std::ops::Deref for TestPrefix {
    type Target = str;
    fn deref(&self) -> &str {
        &self.prefix
    }
}

impl Drop for TestPrefix {
    fn drop(&mut self) {
        delete_prefix(&self.url, &self.prefix);
    }
}
