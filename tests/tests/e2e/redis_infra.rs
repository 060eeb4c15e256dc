//! The stack under the Redis-backed room, proven against a real `redis-server` on smol (no
//! tokio runtime): streams, a blocking XREAD, scripts, a partition, and AOF across a restart.

use std::future::Future;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use redis::aio::MultiplexedConnection;
use redis::streams::{StreamRangeReply, StreamReadOptions, StreamReadReply};
use redis::{AsyncCommands, AsyncConnectionConfig, Client, Script};
use smol::{Timer, future};
use tests::proxy::Proxy;
use tests::redis::{RedisServer, command};

/// Runs `test` on smol, failing it if it takes longer than `limit`.
fn within<T>(limit: Duration, test: impl Future<Output = T>) -> T {
    smol::block_on(future::or(test, async move {
        Timer::after(limit).await;
        panic!("the test did not finish within {limit:?}")
    }))
}

/// A connection for ordinary commands: a reply later than `response` is an error.
async fn connect(url: &str, response: Duration) -> MultiplexedConnection {
    let config = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(2)))
        .set_response_timeout(Some(response));
    Client::open(url)
        .expect("redis url")
        .get_multiplexed_async_connection_with_config(&config)
        .await
        .expect("connect to redis")
}

/// A connection of its own for XREAD BLOCK: no response timeout, since the reply comes only
/// when the stream grows.
async fn connect_blocking(url: &str) -> MultiplexedConnection {
    let config = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(2)))
        .set_response_timeout(None);
    Client::open(url)
        .expect("redis url")
        .get_multiplexed_async_connection_with_config(&config)
        .await
        .expect("connect to redis")
}

#[test]
fn a_multiplexed_connection_on_smol_appends_to_a_stream_and_reads_it_back() {
    let redis = RedisServer::start();
    within(Duration::from_secs(20), async {
        let mut con = connect(&redis.url(), Duration::from_secs(5)).await;
        let mut ids = Vec::new();
        for text in ["hello", "world"] {
            let id: String = con
                .xadd("room", "*", &[("name", "alice"), ("text", text)])
                .await
                .unwrap();
            ids.push(id);
        }
        let range: StreamRangeReply = con.xrange_all("room").await.unwrap();
        let got: Vec<(String, String)> = range
            .ids
            .iter()
            .map(|entry| (entry.id.clone(), entry.get::<String>("text").unwrap()))
            .collect();
        assert_eq!(
            got,
            [
                (ids[0].clone(), "hello".to_owned()),
                (ids[1].clone(), "world".to_owned())
            ]
        );
    });
    assert_eq!(redis.cmd::<i64>(&["XLEN", "room"]), 2);
}

#[test]
fn a_blocking_xread_waits_past_the_default_timeout_and_wakes_on_an_xadd_elsewhere() {
    let redis = RedisServer::start();
    let url = redis.url();
    within(Duration::from_secs(20), async {
        let mut writer = connect(&url, Duration::from_secs(5)).await;
        let first: String = writer.xadd("room", "*", &[("text", "one")]).await.unwrap();

        let mut reader = connect_blocking(&url).await;
        let read = smol::spawn(async move {
            // BLOCK 0: wait for ever, from the last ID this node applied.
            let options = StreamReadOptions::default().block(0).count(100);
            let reply: StreamReadReply = reader
                .xread_options(&["room"], &[&first], &options)
                .await
                .unwrap();
            (Instant::now(), reply)
        });

        // Wait until the server counts the reader as blocked, then longer than redis-rs's
        // default 500 ms response timeout, before the append that wakes it.
        let addr = redis.addr();
        smol::unblock(move || wait_blocked_clients(addr, 1)).await;
        Timer::after(Duration::from_millis(800)).await;
        let added_at = Instant::now();
        let second: String = writer.xadd("room", "*", &[("text", "two")]).await.unwrap();

        let (woke_at, reply) = read.await;
        assert!(woke_at >= added_at);
        let entries: Vec<(&str, String)> = reply.keys[0]
            .ids
            .iter()
            .map(|entry| (entry.id.as_str(), entry.get::<String>("text").unwrap()))
            .collect();
        assert_eq!(entries, [(second.as_str(), "two".to_owned())]);
    });
}

/// Polls INFO until `n` clients are blocked, for at most 10 s.
fn wait_blocked_clients(addr: SocketAddr, n: usize) {
    let want = format!("blocked_clients:{n}\r\n");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let info: String = command(addr, &["INFO", "clients"]).unwrap();
        if info.contains(&want) {
            return;
        }
        assert!(Instant::now() < deadline, "never {want:?}; INFO: {info}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn a_script_is_reloaded_after_script_flush() {
    let redis = RedisServer::start();
    // Atomic append, as the room's sequencer will do it: the script runs alone on the server.
    let append = Script::new(
        "local id = redis.call('XADD', KEYS[1], '*', 'text', ARGV[1]) \
         return {id, redis.call('XLEN', KEYS[1])}",
    );
    within(Duration::from_secs(20), async {
        let mut con = connect(&redis.url(), Duration::from_secs(5)).await;
        // First call: EVALSHA fails with NOSCRIPT, invoke_async loads it and retries.
        let (_, len): (String, i64) = append
            .key("room")
            .arg("one")
            .invoke_async(&mut con)
            .await
            .unwrap();
        assert_eq!(len, 1);

        let _: () = redis::cmd("SCRIPT")
            .arg("FLUSH")
            .query_async(&mut con)
            .await
            .unwrap();
        assert_eq!(
            redis.cmd::<Vec<i64>>(&["SCRIPT", "EXISTS", append.get_hash()]),
            [0]
        );

        let (_, len): (String, i64) = append
            .key("room")
            .arg("two")
            .invoke_async(&mut con)
            .await
            .unwrap();
        assert_eq!(len, 2);
    });
    assert_eq!(
        redis.cmd::<Vec<i64>>(&["SCRIPT", "EXISTS", append.get_hash()]),
        [1]
    );
}

#[test]
fn a_cut_link_fails_a_command_within_the_response_timeout_and_a_new_connection_works_after_restore()
{
    let redis = RedisServer::start();
    let proxy = Proxy::start(redis.addr());
    let url = format!("redis://{}", proxy.addr());
    within(Duration::from_secs(20), async {
        let timeout = Duration::from_millis(300);
        let mut con = connect(&url, timeout).await;
        let _: () = con.set("k", "v").await.unwrap();

        proxy.cut();
        let started = Instant::now();
        let err = con.get::<_, String>("k").await.unwrap_err();
        let took = started.elapsed();
        assert!(err.is_timeout(), "expected a timeout, got {err}");
        assert!(
            took >= timeout && took < Duration::from_secs(3),
            "failed after {took:?}"
        );

        proxy.restore();
        let mut fresh = connect(&url, timeout).await;
        let value: String = fresh.get("k").await.unwrap();
        assert_eq!(value, "v");
    });
}

#[test]
fn with_aof_a_stream_survives_a_sigkill_and_restart() {
    let mut redis = RedisServer::builder().aof(true).start();
    let ids: Vec<String> = (0..3)
        .map(|i| redis.cmd::<String>(&["XADD", "room", "*", "text", &format!("m{i}")]))
        .collect();
    let port = redis.port();

    redis.kill();
    assert!(
        redis.try_cmd::<String>(&["PING"]).is_err(),
        "killed, yet answering"
    );
    redis.restart();

    assert_eq!(redis.port(), port);
    let range: Vec<(String, Vec<String>)> = redis.cmd(&["XRANGE", "room", "-", "+"]);
    let got: Vec<String> = range.into_iter().map(|(id, _)| id).collect();
    assert_eq!(got, ids);
    // And the async client is happy with the restarted server.
    within(Duration::from_secs(20), async {
        let mut con = connect(&redis.url(), Duration::from_secs(5)).await;
        let len: usize = con.xlen("room").await.unwrap();
        assert_eq!(len, 3);
    });
}

#[test]
fn without_aof_a_restart_starts_empty() {
    let mut redis = RedisServer::start();
    assert_eq!(redis.cmd::<String>(&["SET", "k", "v"]), "OK");
    redis.restart();
    assert_eq!(redis.cmd::<Option<String>>(&["GET", "k"]), None);
    let refused = redis.try_cmd::<redis::Value>(&["NOSUCHCOMMAND"]);
    assert!(refused.is_err_and(|e| !e.is_io_error()), "an error reply");
}
