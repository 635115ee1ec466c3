use super::*;

fn exec(id: &str, tenant: &str, priority: i32, due_s: i64) -> Queued {
    Queued {
        id: id.into(),
        tenant: tenant.into(),
        priority,
        due_at: DateTime::from_timestamp(due_s, 0).expect("time"),
    }
}

fn drain(q: &mut Queue) -> Vec<String> {
    std::iter::from_fn(|| q.pop_ready(|_| true).map(|e| e.id)).collect()
}

#[test]
fn priority_then_due_time_among_ready_ones() {
    let mut q = Queue::default();
    for e in [
        exec("a", "t", 0, 10),
        exec("b", "t", 5, 20),
        exec("c", "t", 5, 15),
        exec("d", "t", 9, 100),
    ] {
        assert!(q.offer(&e));
    }
    assert!(!q.offer(&exec("a", "t", 0, 10)), "held once");
    assert_eq!(q.next_due(), DateTime::from_timestamp(10, 0));
    q.promote(DateTime::from_timestamp(50, 0).expect("time"));
    assert_eq!(drain(&mut q), vec!["c", "b", "a"], "d is not due yet");
    assert_eq!(q.next_due(), DateTime::from_timestamp(100, 0));
}

#[test]
fn tenants_at_their_limit_are_passed_over() {
    let mut q = Queue::default();
    q.offer(&exec("a1", "a", 9, 1));
    q.offer(&exec("b1", "b", 1, 1));
    q.promote(DateTime::from_timestamp(5, 0).expect("time"));
    assert_eq!(q.pop_ready(|t| t != "a").map(|e| e.id), Some("b1".into()));
    assert_eq!(q.ready_len(), 1, "a1 still waits for its tenant");
    assert_eq!(q.pop_ready(|_| true).map(|e| e.id), Some("a1".into()));
}

#[test]
fn tenants_take_turns_at_equal_priority() {
    let mut q = Queue::default();
    for i in 0..3 {
        q.offer(&exec(&format!("a{i}"), "a", 0, i));
        q.offer(&exec(&format!("b{i}"), "b", 0, 10 + i));
    }
    q.offer(&exec("c0", "c", 0, 50));
    q.promote(DateTime::from_timestamp(100, 0).expect("time"));
    assert_eq!(
        drain(&mut q),
        vec!["a0", "b0", "c0", "a1", "b1", "a2", "b2"],
        "one from each tenant in turn, each tenant's own in due order"
    );
}

#[test]
fn a_flood_at_the_top_priority_leaves_others_their_turn_once_limited() {
    let mut q = Queue::default();
    for i in 0..10_000 {
        q.offer(&exec(&format!("a{i}"), "a", 100, 1));
    }
    q.offer(&exec("b", "b", 0, 2));
    q.promote(DateTime::from_timestamp(5, 0).expect("time"));
    // Higher priority runs first across tenants while `a` may run...
    assert_eq!(q.pop_ready(|_| true).map(|e| e.tenant), Some("a".into()));
    // ...and once `a` is at its limit, `b` is next, without scanning a's backlog.
    assert_eq!(q.pop_ready(|t| t != "a").map(|e| e.id), Some("b".into()));
}

#[test]
fn forgotten_ids_are_skipped() {
    let mut q = Queue::default();
    q.offer(&exec("x", "t", 0, 1));
    q.offer(&exec("y", "t", 0, 2));
    q.forget("x");
    q.promote(DateTime::from_timestamp(5, 0).expect("time"));
    assert_eq!(drain(&mut q), vec!["y"]);
    assert_eq!(q.len(), 1, "y is held until the dispatcher forgets it");
}
