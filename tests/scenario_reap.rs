//! A run reaps every actor it started, forked ones included, as soon as the instance ends: a
//! long run (`--repeat`, fuzzing) must not pile up zombies until it runs out of pids.
//!
//! Its own test binary: it asks about every child of the process, so nothing else may fork
//! here.

use epollscope::scenario;

#[test]
fn no_actor_outlives_its_instance_not_even_as_a_zombie() {
    // As `epollscope` does: orphaned actors are re-parented to us, not to init.
    nix::sys::prctl::set_child_subreaper(true).expect("subreaper");
    // Four workers forked by main, each asleep in epoll_wait when the run tears down.
    let scenario = scenario::load(std::path::Path::new("scenarios/herd-epollexclusive.scn"))
        .expect("scenario");
    for &family in &scenario.families {
        let report = scenario::run(&scenario, family);
        assert!(report.passed, "{}", report.summary());
        // No child left at all: not running, not a zombie.
        let left = nix::sys::wait::waitpid(None, Some(nix::sys::wait::WaitPidFlag::WNOHANG));
        assert_eq!(left, Err(nix::errno::Errno::ECHILD), "after {family:?}");
    }
}
