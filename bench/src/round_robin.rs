//! Part 5, round-robin: each request to another TART, over up to 1,000
//! names spread over the fleet: beyond Caddy's dynamic-upstream cache (100
//! names), so in dns mode most requests need a lookup.

use crate::load::{Generator, LoadResult};
use crate::modes::ModeFleet;
use crate::{progress, Options, Res};

/// How many names the round-robin cycles through (fewer when the fleet is smaller).
pub const NAMES: usize = 1_000;

/// The paths of the round-robin on `fleet`.
pub fn paths(fleet: &ModeFleet) -> Vec<String> {
    fleet
        .spread(NAMES)
        .iter()
        .map(|n| format!("/{n}/"))
        .collect()
}

/// Runs the round-robin on each fleet in turn, `opts.reps` times
/// (interleaved): the results per fleet, in order.
pub async fn measure(
    opts: &Options,
    generator: &Generator,
    fleets: &[&ModeFleet],
) -> Res<Vec<Vec<LoadResult>>> {
    let mut out = vec![Vec::new(); fleets.len()];
    for _ in 0..opts.reps {
        for (i, f) in fleets.iter().enumerate() {
            let paths = paths(f);
            let r = generator
                .run_cycle(f.addr, e2e::sync::DOMAIN, &paths, opts.secs)
                .await?;
            progress!(
                "  round-robin over {} names, {} TARTs, {} mode: {:.0} req/s, {} non-2xx, {} socket errors",
                paths.len(),
                f.n,
                f.mode.as_str(),
                r.rps,
                r.non_2xx,
                r.socket_errors
            );
            out[i].push(r);
        }
    }
    Ok(out)
}
