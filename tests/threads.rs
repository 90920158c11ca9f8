//! The thread-pool helpers: passes on the pool's workers with the other workers kept awake, and
//! workers pinned to CPUs.
use convnet::threads::{allowed_cpus, on_workers, pool_builder};
use rayon::prelude::*;

#[test]
fn on_workers_runs_nested_parallel_work_and_returns_its_result() {
    for threads in [1, 2, 3] {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
        // Nested on_workers calls inside parallel loops inside on_workers.
        let sum = pool.install(|| on_workers(|| (0..10_000u64).into_par_iter().map(|i| on_workers(|| i * 2)).sum::<u64>()));
        assert_eq!(sum, 9_999 * 10_000, "{threads} threads");
    }
    // Called from a thread outside any pool: runs on the global pool.
    let sum = std::thread::spawn(|| on_workers(|| (0..1_000u64).into_par_iter().sum::<u64>())).join().unwrap();
    assert_eq!(sum, 999 * 1_000 / 2);
}

#[test]
fn a_panic_inside_on_workers_reaches_the_caller_and_the_pool_keeps_working() {
    // The helpers spin until the pass ends; a panicking pass must still end it, or this hangs.
    let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build().unwrap();
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        pool.install(|| {
            on_workers(|| {
                (0..100).into_par_iter().for_each(|i| assert!(i != 50, "boom at 50"));
            })
        })
    }));
    assert!(result.is_err(), "the panic must reach the caller");
    assert_eq!(pool.install(|| on_workers(|| (0..10u32).into_par_iter().sum::<u32>())), 45);
}

#[test]
fn pool_builder_pins_each_worker_to_one_cpu_when_there_are_enough() {
    let cpus = allowed_cpus();
    if cpus.len() < 2 {
        eprintln!("skipped: this process may run on {} CPU(s)", cpus.len());
        return;
    }
    let pool = pool_builder(2).build().unwrap();
    let per_worker: Vec<Vec<usize>> = pool.broadcast(|_| allowed_cpus());
    assert_eq!(per_worker.len(), 2);
    for (i, mask) in per_worker.iter().enumerate() {
        assert_eq!(mask, &vec![cpus[i]], "worker {i} runs on {mask:?}");
    }
    // More workers than CPUs: no pinning.
    let pool = pool_builder(cpus.len() + 1).build().unwrap();
    assert!(pool.broadcast(|_| allowed_cpus()).iter().all(|mask| mask == &cpus));
}
