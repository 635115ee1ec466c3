//! A child process writing to the SQLite store is killed with SIGKILL; on
//! reopening, every write it had acknowledged is there.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use taskhost_store::{ExecutionFilter, PageRequest};
use taskhost_tests::stores::Harness;

#[tokio::test]
async fn kill_9_loses_no_acknowledged_write() {
    let mut harness = Harness::sqlite().await;
    let mut child = Command::new(env!("CARGO_BIN_EXE_store-writer"))
        .arg(&harness.url)
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the writer");
    let mut acked = Vec::new();
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    while acked.len() < 2000 {
        let line = lines
            .next()
            .expect("the writer stopped early")
            .expect("read");
        acked.push(line.strip_prefix("ack ").expect("ack line").to_owned());
    }
    child.kill().expect("SIGKILL");
    child.wait().expect("reap");
    // Lines printed after our last read were acknowledged too.
    acked.extend(
        lines
            .map_while(Result::ok)
            .filter_map(|l| l.strip_prefix("ack ").map(str::to_owned)),
    );

    harness.reopen().await;
    let mut stored = std::collections::HashSet::new();
    let mut request = PageRequest {
        cursor: None,
        limit: Some(1000),
    };
    loop {
        let page = harness
            .store
            .list_executions("crash", &ExecutionFilter::default(), &request)
            .await
            .expect("list");
        stored.extend(page.items.into_iter().map(|e| e.id));
        match page.next {
            Some(next) => request.cursor = Some(next),
            None => break,
        }
    }
    let lost: Vec<&String> = acked.iter().filter(|id| !stored.contains(*id)).collect();
    assert!(
        lost.is_empty(),
        "{} of {} acknowledged writes were lost, e.g. {:?}",
        lost.len(),
        acked.len(),
        lost.first()
    );
    assert!(stored.len() >= acked.len());
}
