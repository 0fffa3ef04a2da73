//! Load: a thousand requests to fifty computers, each settled by two
//! simultaneous clicks; nothing lost, nothing doubled, every email delivered
//! once. It prints requests per second and the p99 latency from click to
//! session for information only: speed is for benchmarks, not tests.

use doorman_server::Limits;
use doorman_test_support::World;
use doorman_test_support::world::extract_nonce;
use std::collections::HashSet;
use std::time::Instant;

const COMPUTERS: usize = 50;
const REQUESTS: usize = 1000;
/// Operators waiting at once.
const CONCURRENCY: usize = 50;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_requests_to_fifty_computers() {
    let builder = World::builder()
        .recipients(&["it@example.com"])
        .limits(Limits {
            max_pending_per_operator: 1000,
            max_requests_per_hour: 1000,
            block_minutes: 20,
        });
    let world = World::builder()
        .recipients(&["it@example.com"])
        .limits(builder.limits)
        .start()
        .await;
    let mut computers = vec!["office-pc".to_string()];
    for i in 1..COMPUTERS {
        let name = format!("pc-{i:02}");
        world.add_agent(&name, &builder).await;
        computers.push(name);
    }

    let started = Instant::now();
    let mut latencies = Vec::with_capacity(REQUESTS);
    let mut clicked = 0usize;
    for batch in 0..REQUESTS / CONCURRENCY {
        let connections: Vec<_> = (0..CONCURRENCY)
            .map(|i| {
                let computer = &computers[(batch * CONCURRENCY + i) % COMPUTERS];
                world.connect_to(computer, &world.operator_token, &["true"], "load")
            })
            .collect();
        let mut ids = Vec::with_capacity(CONCURRENCY);
        for connection in &connections {
            ids.push(
                connection.event("pending").await["request_id"]
                    .as_str()
                    .unwrap()
                    .to_string(),
            );
        }
        let mails = world.smtp.wait_for(clicked + CONCURRENCY).await;
        let batch_mails = mails[clicked..clicked + CONCURRENCY].to_vec();
        clicked += CONCURRENCY;
        // Each operator notes when its session starts.
        let sessions: Vec<_> = connections
            .into_iter()
            .map(|connection| {
                tokio::spawn(async move {
                    connection.event("session_started").await;
                    let at = Instant::now();
                    assert_eq!(connection.finish().await, Ok(0));
                    at
                })
            })
            .collect();
        // Two recipients' browsers click each link at once.
        let clicks = batch_mails.into_iter().map(|mail| {
            let http = world.http.clone();
            tokio::spawn(async move {
                let link = mail.link();
                let message_id = mail.header("Message-ID").unwrap();
                let page = http.get(&link).send().await.unwrap().text().await.unwrap();
                let nonce = extract_nonce(&page).unwrap();
                let start = Instant::now();
                let form = [("decision", "allow"), ("nonce", nonce.as_str())];
                let (a, b) = tokio::join!(
                    http.post(&link).form(&form).send(),
                    http.post(&link).form(&form).send()
                );
                assert!(
                    a.unwrap().status().is_redirection() && b.unwrap().status().is_redirection()
                );
                (message_id, start)
            })
        });
        let clicked_at: Vec<(String, Instant)> = join_all(clicks.collect()).await;
        let session_at: Vec<Instant> = join_all(sessions).await;
        for (id, session) in ids.iter().zip(session_at) {
            let (_, click) = clicked_at
                .iter()
                .find(|(message_id, _)| message_id.contains(id.as_str()))
                .expect("the request's email was clicked");
            latencies.push(session.saturating_duration_since(*click));
        }
    }
    let elapsed = started.elapsed();

    let mails = world.smtp.mails();
    assert_eq!(mails.len(), REQUESTS, "every email delivered exactly once");
    let ids: HashSet<String> = mails
        .iter()
        .map(|m| m.header("Message-ID").unwrap())
        .collect();
    assert_eq!(ids.len(), REQUESTS, "no email sent twice");
    let events = world.audit_events().await;
    let mut decided = HashSet::new();
    for event in events
        .iter()
        .filter(|e| e.event == "allowed" || e.event == "denied")
    {
        assert!(
            decided.insert(event.request_id.clone()),
            "a request decided twice"
        );
    }
    assert_eq!(decided.len(), REQUESTS, "no decision lost");
    let sessions = events
        .iter()
        .filter(|e| e.event == "session_started")
        .count();
    assert_eq!(sessions, REQUESTS, "exactly one session per request");

    latencies.sort();
    let p99 = latencies[latencies.len() * 99 / 100];
    println!(
        "{REQUESTS} requests to {COMPUTERS} computers in {:.1} s: {:.0} requests/s; click → session started p99 {:.1} ms",
        elapsed.as_secs_f64(),
        REQUESTS as f64 / elapsed.as_secs_f64(),
        p99.as_secs_f64() * 1000.0
    );
}

async fn join_all<T: Send + 'static>(tasks: Vec<tokio::task::JoinHandle<T>>) -> Vec<T> {
    let mut results = Vec::with_capacity(tasks.len());
    for task in tasks {
        results.push(task.await.unwrap());
    }
    results
}
