//! Load check: how many API requests per second the sandbox answers on this machine.
//!
//! `cargo run -p wrapup-sandbox --example load [seconds] [concurrency]` — mixes conversation reads, wrap-up reads
//! and catalog reads over preloaded legs, with the rate limit lifted. A benchmark, not a test.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use wrapup_sandbox::{Sandbox, SandboxConfig};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let secs: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(5);
    let conc: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(32);
    let cfg = SandboxConfig { preload: 2000, rate_limit_per_minute: u32::MAX, ..SandboxConfig::default() };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let clock = wrapup_core::ScaledClock::system().shared();
    let sb = Sandbox::start(cfg, listener, clock).await?;
    let base = sb.base_url();
    let http = reqwest::Client::new();
    let (id, secret) = sb.credentials()[0].clone();
    let tok: serde_json::Value = http
        .post(format!("{base}/oauth/token"))
        .basic_auth(id, Some(secret))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await?
        .json()
        .await?;
    let token = tok["access_token"].as_str().unwrap_or_default().to_string();
    let legs = Arc::new(sb.legs());
    let done = Arc::new(AtomicU64::new(0));
    let end = Instant::now() + Duration::from_secs(secs);
    let mut tasks = Vec::new();
    for w in 0..conc {
        let (http, base, token, legs, done) = (http.clone(), base.clone(), token.clone(), legs.clone(), done.clone());
        tasks.push(tokio::spawn(async move {
            let mut i = w;
            while Instant::now() < end {
                let leg = &legs[i % legs.len()];
                let path = match i % 3 {
                    0 => format!("/api/v2/conversations/{}", leg.conversation_id),
                    1 => format!(
                        "/api/v2/conversations/{}/participants/{}/wrapup?provisional=true",
                        leg.conversation_id, leg.participant_id
                    ),
                    _ => "/api/v2/routing/wrapupcodes?pageSize=100".to_string(),
                };
                if let Ok(r) = http.get(format!("{base}{path}")).bearer_auth(&token).send().await {
                    let _ = r.bytes().await;
                    done.fetch_add(1, Ordering::Relaxed);
                }
                i += conc;
            }
        }));
    }
    for t in tasks {
        t.await?;
    }
    let n = done.load(Ordering::Relaxed);
    println!("{n} requests in {secs}s = {:.0} req/s (client and server share the machine)", n as f64 / secs as f64);
    sb.shutdown().await;
    Ok(())
}
