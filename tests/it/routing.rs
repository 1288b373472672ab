//! The routing service: policy checks and the route cache's consistency.

use std::time::Duration;

use ansim::routing::{SessionError, SessionRequest};

use crate::harness::{DAY, Db, TestDb, n, pool_numbers, routing};
use crate::on_both_databases;

fn request(a: &str, b: &str) -> SessionRequest {
    SessionRequest {
        a: n(a),
        b: n(b),
        ttl: None,
        retention_class: None,
        record: None,
    }
}

const C: &str = "+821012345678";
const M: &str = "+821098765432";

async fn policy_defaults_and_limits(db: Db) {
    let db = TestDb::new(db).await;
    let (routing, clock) = routing(&db);
    db.store
        .add_numbers(&pool_numbers(2), clock_now(&clock))
        .await
        .unwrap();
    let s = routing.create_session(request(C, M)).await.unwrap();
    assert_eq!(s.expires_at, clock_now(&clock).saturating_add(DAY * 7));
    assert_eq!((s.retention_class.as_str(), s.record), ("dispute-3y", true));

    let invalid = |e: SessionError| match e {
        SessionError::Invalid { field, .. } => field,
        other => panic!("expected Invalid, got {other:?}"),
    };
    let mut r = request(C, C);
    assert_eq!(
        invalid(routing.create_session(r.clone()).await.unwrap_err()),
        "b"
    );
    r = request(C, M);
    r.ttl = Some(DAY * 366);
    assert_eq!(
        invalid(routing.create_session(r.clone()).await.unwrap_err()),
        "ttl"
    );
    r.ttl = Some(Duration::ZERO);
    assert_eq!(
        invalid(routing.create_session(r.clone()).await.unwrap_err()),
        "ttl"
    );
    r.ttl = None;
    r.retention_class = Some("forever".into());
    assert_eq!(
        invalid(routing.create_session(r).await.unwrap_err()),
        "retention_class"
    );
}
on_both_databases!(policy_defaults_and_limits);

fn clock_now(c: &ansim::clock::ManualClock) -> ansim::clock::Timestamp {
    use ansim::clock::Clock;
    c.now()
}

async fn route_cache_is_invalidated_and_bounded(db: Db) {
    let db = TestDb::new(db).await;
    let (routing, clock) = routing(&db);
    db.store
        .add_numbers(&pool_numbers(1), clock_now(&clock))
        .await
        .unwrap();
    let (c, m) = (n(C), n(M));
    let proxy = pool_numbers(1).remove(0);

    // No session yet: the miss is cached (a negative entry)...
    assert!(
        routing
            .route(&c, &proxy, clock_now(&clock))
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!((routing.cached_routes(), routing.cached_misses()), (0, 1));
    let misses = routing
        .counters
        .cache_misses
        .load(std::sync::atomic::Ordering::Relaxed);
    assert!(
        routing
            .route(&c, &proxy, clock_now(&clock))
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(
        routing
            .counters
            .cache_misses
            .load(std::sync::atomic::Ordering::Relaxed),
        misses,
        "the second miss is answered from memory"
    );
    // ...and replaced when a session opens here: both of its routes are
    // cached as it opens, so even its first call is found from memory.
    let s = routing.create_session(request(C, M)).await.unwrap();
    assert_eq!((routing.cached_routes(), routing.cached_misses()), (2, 0));
    let r = routing
        .route(&c, &proxy, clock_now(&clock))
        .await
        .unwrap()
        .unwrap();
    assert_eq!((r.session_id.as_str(), &r.callee), (s.id.as_str(), &m));
    assert_eq!(
        routing
            .counters
            .cache_misses
            .load(std::sync::atomic::Ordering::Relaxed),
        misses,
        "the first call of a session opened here is a hit"
    );
    let hits = routing
        .counters
        .cache_hits
        .load(std::sync::atomic::Ordering::Relaxed);
    routing
        .route(&c, &proxy, clock_now(&clock))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        routing
            .counters
            .cache_hits
            .load(std::sync::atomic::Ordering::Relaxed),
        hits + 1
    );
    // The engine's inline path: a hit without the store, counted.
    let inline = routing.route_cached(&c, &proxy, clock_now(&clock));
    assert_eq!(
        inline.flatten().map(|r| r.session_id),
        Some(s.id.clone()),
        "a cached route is answered without a lookup task"
    );
    assert_eq!(
        routing
            .counters
            .cache_hits
            .load(std::sync::atomic::Ordering::Relaxed),
        hits + 2
    );
    let other = pool_numbers(2).remove(1);
    assert!(
        routing
            .route_cached(&c, &other, clock_now(&clock))
            .is_none(),
        "nothing cached: only Routing::route (the database) can tell"
    );

    // Closing through the service drops the entry immediately.
    routing.close_session(&s.id).await.unwrap();
    assert!(
        routing
            .route(&c, &proxy, clock_now(&clock))
            .await
            .unwrap()
            .is_none()
    );

    // A session closed by another node (straight in the store) is served
    // from this node's cache for at most route_cache_ttl.
    let s2 = routing.create_session(request(C, M)).await.unwrap();
    routing
        .route(&c, &proxy, clock_now(&clock))
        .await
        .unwrap()
        .unwrap();
    db.store
        .close_session(&s2.id, clock_now(&clock))
        .await
        .unwrap();
    assert!(
        routing
            .route(&c, &proxy, clock_now(&clock))
            .await
            .unwrap()
            .is_some(),
        "cached"
    );
    clock.advance(routing.policy().route_cache_ttl);
    assert!(
        routing
            .route(&c, &proxy, clock_now(&clock))
            .await
            .unwrap()
            .is_none()
    );
}
on_both_databases!(route_cache_is_invalidated_and_bounded);

/// What a session opening here puts in the cache is what the database
/// answers for the same keys: the write-through path and the lookup agree.
async fn routes_cached_on_open_are_what_the_database_answers(db: Db) {
    let db = TestDb::new(db).await;
    let (routing, clock) = routing(&db);
    db.store
        .add_numbers(&pool_numbers(3), clock_now(&clock))
        .await
        .unwrap();
    let mut r = request(C, M);
    r.record = Some(false);
    r.ttl = Some(Duration::from_secs(600));
    let s = routing.create_session(r).await.unwrap();
    let routes = s.routes();
    assert_eq!(routes.len(), 2);
    assert_eq!(routing.cached_routes(), 2);
    for ((caller, dialled), cached) in routes {
        let now = clock_now(&clock);
        let stored = db.store.lookup_route(&caller, &dialled, now).await.unwrap();
        assert_eq!(stored.as_ref(), Some(&cached), "{caller:?} → {dialled:?}");
        let served = routing.route_cached(&caller, &dialled, now);
        assert_eq!(served, Some(Some(cached)));
    }
    assert_eq!(
        routing
            .counters
            .cache_misses
            .load(std::sync::atomic::Ordering::Relaxed),
        0
    );
}
on_both_databases!(routes_cached_on_open_are_what_the_database_answers);

async fn cached_routes_never_outlive_the_session(db: Db) {
    let db = TestDb::new(db).await;
    let (routing, clock) = routing(&db);
    db.store
        .add_numbers(&pool_numbers(1), clock_now(&clock))
        .await
        .unwrap();
    let mut r = request(C, M);
    r.ttl = Some(Duration::from_secs(10));
    let s = routing.create_session(r).await.unwrap();
    let key = (n(C), s.a.proxy_number.clone());
    assert!(
        routing
            .route(&key.0, &key.1, clock_now(&clock))
            .await
            .unwrap()
            .is_some()
    );
    clock.advance(Duration::from_secs(10));
    // Both of its routes were cached as it opened; neither is served now.
    for (caller, dialled) in s.route_keys() {
        let now = clock_now(&clock);
        assert_eq!(routing.route_cached(&caller, &dialled, now), None);
        assert!(
            routing
                .route(&caller, &dialled, now)
                .await
                .unwrap()
                .is_none()
        );
    }
    assert_eq!(routing.cached_routes(), 0);

    // The expiry job ends it and starts the quarantine.
    assert_eq!(routing.expire_due(clock_now(&clock)).await.unwrap(), 1);
    let ended = routing.get_session(&s.id).await.unwrap().unwrap();
    assert_eq!(ended.closed_at, Some(s.expires_at));
    let refused = routing
        .create_session(request(C, "+821033334444"))
        .await
        .unwrap_err();
    assert!(matches!(refused, SessionError::Create(_)), "{refused:?}");
}
on_both_databases!(cached_routes_never_outlive_the_session);

/// A session opened through another node (another `Routing` on the same
/// database) is routable here once the negative entry is older than
/// `NEGATIVE_TTL`, without any message between the nodes.
async fn a_miss_cached_here_expires_for_a_session_opened_elsewhere(db: Db) {
    let db = TestDb::new(db).await;
    let (here, clock) = routing(&db);
    let (elsewhere, _) = routing(&db);
    db.store
        .add_numbers(&pool_numbers(1), clock_now(&clock))
        .await
        .unwrap();
    let (c, proxy) = (n(C), pool_numbers(1).remove(0));
    assert!(
        here.route(&c, &proxy, clock_now(&clock))
            .await
            .unwrap()
            .is_none()
    );
    elsewhere.create_session(request(C, M)).await.unwrap();
    assert!(
        here.route(&c, &proxy, clock_now(&clock))
            .await
            .unwrap()
            .is_none(),
        "still the cached miss"
    );
    clock.advance(ansim::routing::NEGATIVE_TTL);
    assert!(
        here.route(&c, &proxy, clock_now(&clock))
            .await
            .unwrap()
            .is_some()
    );
}
on_both_databases!(a_miss_cached_here_expires_for_a_session_opened_elsewhere);
