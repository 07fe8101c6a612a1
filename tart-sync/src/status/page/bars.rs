//! The 24-hour history bar of one TART: a pure function from its history
//! ([`Segment`]s) to coloured blocks ([`Bar`]), and those blocks as inline
//! SVG. The page renders the SVG; live updates send the same blocks as
//! JSON and `app.js` draws them the same way.
//!
//! The bar is [`WIDTH`] units wide, one unit per minute of the window.
//! A stretch shorter than [`MIN_WIDTH`] units is widened to that (taking
//! from its neighbours), so a blip, or a state that began a minute ago,
//! shows at any size the bar is drawn at. A
//! TART that changed state more often than [`MAX_BLOCKS`] times in the window
//! is drawn in [`MAX_BLOCKS`] equal bins, each in the worst state it held, so
//! a bar's size stays bounded whatever the history.

use maud::{html, Markup};
use serde::Serialize;
use time::OffsetDateTime;

use crate::desired::NodeState;
use crate::health::{Segment, ServiceState};

/// Units across a bar: one per minute of a 24-hour window.
pub const WIDTH: u32 = 1440;
/// Most blocks in one bar.
pub const MAX_BLOCKS: usize = 120;
/// Narrowest block, in units (about 1.5 px on a 10 rem bar).
pub const MIN_WIDTH: u32 = 15;

/// What a stretch of the bar shows, from worst to best (the order decides
/// which state a bin shows when it held several).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Shade {
    /// Online in headscale, the probe failed.
    Down,
    /// Offline in headscale, its URL answers 503.
    Offline,
    /// Offline in headscale but still proxied.
    Grace,
    /// Online, not probed (probes off or not yet).
    Online,
    /// Online and the probe got an answer.
    Up,
    /// Nothing known (before tart-sync saw it).
    Unknown,
}

impl Shade {
    /// The CSS class (and the word in summaries).
    pub fn as_str(self) -> &'static str {
        match self {
            Shade::Down => "down",
            Shade::Offline => "offline",
            Shade::Grace => "grace",
            Shade::Online => "online",
            Shade::Up => "up",
            Shade::Unknown => "unknown",
        }
    }

    /// What a segment shows: headscale's view first (an offline TART is
    /// offline, whatever the last probe said), then the probes'.
    pub fn of(s: &Segment) -> Shade {
        match (s.tailnet, s.service) {
            (Some(NodeState::Offline), _) => Shade::Offline,
            (Some(NodeState::Grace), _) => Shade::Grace,
            (_, ServiceState::Down) => Shade::Down,
            (_, ServiceState::Up) => Shade::Up,
            (Some(NodeState::Online), ServiceState::Unknown) => Shade::Online,
            (None, ServiceState::Unknown) => Shade::Unknown,
        }
    }
}

/// One coloured stretch: from unit `x`, `w` units wide.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Block {
    /// Start, in units from the left (the window's start).
    pub x: u32,
    /// Width in units (at least 1).
    pub w: u32,
    /// Its state.
    pub s: Shade,
}

/// A history bar: its blocks and a one-line summary for people and screen readers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Bar {
    /// Blocks, left to right, not overlapping; the gaps are unknown time.
    pub blocks: Vec<Block>,
    /// E.g. `Last 24 h: up 97.9%, down 2.1%; 2 changes`.
    pub title: String,
}

/// Minutes (units) from `from` to `t`, rounded, within `0..=WIDTH`.
fn unit(t: OffsetDateTime, from: OffsetDateTime, to: OffsetDateTime) -> u32 {
    let span = (to - from).as_seconds_f64();
    if span <= 0.0 {
        return 0;
    }
    let part = ((t - from).as_seconds_f64() / span).clamp(0.0, 1.0);
    // Within 0..=WIDTH by the clamp, so the cast cannot wrap.
    (part * f64::from(WIDTH)).round() as u32
}

/// The bar for `segments` (oldest first) over the window `from..to`.
pub fn bar(segments: &[Segment], from: OffsetDateTime, to: OffsetDateTime) -> Bar {
    let mut blocks: Vec<Block> = Vec::new();
    let mut seconds: [f64; 6] = [0.0; 6];
    let mut changes = 0usize;
    let mut previous: Option<Shade> = None;
    for s in segments {
        let start = s.from.max(from);
        let end = s.to.min(to);
        if end <= start {
            continue;
        }
        let shade = Shade::of(s);
        if shade == Shade::Unknown {
            // Drawn as the bar's background; not known time.
            continue;
        }
        seconds[shade as usize] += (end - start).as_seconds_f64();
        if previous.is_some_and(|p| p != shade) {
            changes = changes.saturating_add(1);
        }
        previous = Some(shade);
        let after_last = blocks.last().map_or(0, |b| b.x.saturating_add(b.w));
        let x = unit(start, from, to)
            .max(after_last)
            .min(WIDTH.saturating_sub(1));
        let end_unit = unit(end, from, to).max(x.saturating_add(1)).min(WIDTH);
        if x >= end_unit {
            continue;
        }
        match blocks.last_mut() {
            Some(last) if last.s == shade && last.x.saturating_add(last.w) == x => {
                last.w = end_unit.saturating_sub(last.x);
            }
            _ => blocks.push(Block {
                x,
                w: end_unit.saturating_sub(x),
                s: shade,
            }),
        }
    }
    if blocks.len() > MAX_BLOCKS {
        blocks = binned(&blocks);
    }
    widen(&mut blocks);
    Bar {
        title: summary(&seconds, changes),
        blocks,
    }
}

/// Widens every block narrower than [`MIN_WIDTH`] to it: to the right
/// while there is room (trimming the next block), else to the left
/// (trimming the previous one); a neighbour trimmed to nothing goes.
fn widen(blocks: &mut Vec<Block>) {
    let mut i = 0;
    while i < blocks.len() {
        if blocks[i].w < MIN_WIDTH {
            let x = blocks[i].x;
            let end = x.saturating_add(MIN_WIDTH).min(WIDTH);
            let start = end.saturating_sub(MIN_WIDTH).min(x);
            blocks[i].x = start;
            blocks[i].w = end.saturating_sub(start);
            if let Some(next) = blocks.get_mut(i + 1) {
                let next_end = next.x.saturating_add(next.w);
                next.x = next.x.max(end);
                next.w = next_end.saturating_sub(next.x);
            }
            if i > 0 {
                let prev = &mut blocks[i - 1];
                prev.w = prev.w.min(start.saturating_sub(prev.x));
            }
        }
        i += 1;
    }
    blocks.retain(|b| b.w > 0);
}

/// `blocks` in [`MAX_BLOCKS`] equal bins, each the worst shade it holds.
fn binned(blocks: &[Block]) -> Vec<Block> {
    let bins = u32::try_from(MAX_BLOCKS).unwrap_or(u32::MAX);
    let mut out: Vec<Block> = Vec::new();
    for i in 0..bins {
        let lo = WIDTH.saturating_mul(i) / bins;
        let hi = WIDTH.saturating_mul(i.saturating_add(1)) / bins;
        let worst = blocks
            .iter()
            .filter(|b| b.x < hi && b.x.saturating_add(b.w) > lo)
            .map(|b| b.s)
            .min();
        let Some(s) = worst else { continue };
        match out.last_mut() {
            Some(last) if last.s == s && last.x.saturating_add(last.w) == lo => {
                last.w = hi.saturating_sub(last.x);
            }
            _ => out.push(Block {
                x: lo,
                w: hi.saturating_sub(lo),
                s,
            }),
        }
    }
    out
}

/// `Last 24 h: up 97.9%, down 2.1%; 2 changes`, shares of the known time.
fn summary(seconds: &[f64; 6], changes: usize) -> String {
    let known: f64 = seconds.iter().sum();
    if known <= 0.0 {
        return "Last 24 h: no history yet".into();
    }
    let order = [
        Shade::Up,
        Shade::Online,
        Shade::Down,
        Shade::Grace,
        Shade::Offline,
        Shade::Unknown,
    ];
    let parts: Vec<String> = order
        .iter()
        .filter(|s| seconds[**s as usize] > 0.0)
        .map(|s| {
            let pct = seconds[*s as usize] / known * 100.0;
            format!("{} {}%", s.as_str(), percent(pct))
        })
        .collect();
    let changes = match changes {
        0 => "no change".to_string(),
        1 => "1 change".to_string(),
        n => format!("{n} changes"),
    };
    format!("Last 24 h: {}; {changes}", parts.join(", "))
}

/// `100`, `97.9`, `0.1`, `<0.1`.
fn percent(p: f64) -> String {
    if p >= 99.95 {
        "100".into()
    } else if p > 0.0 && p < 0.1 {
        "<0.1".into()
    } else {
        format!("{p:.1}")
    }
}

/// The bar as inline SVG, with its summary as `<title>` and `aria-label`.
pub fn svg(bar: &Bar) -> Markup {
    html! {
        svg.bar viewBox={ "0 0 " (WIDTH) " 10" } preserveAspectRatio="none" role="img" aria-label=(bar.title) {
            title { (bar.title) }
            rect.unknown width=(WIDTH) height="10" {}
            @for b in &bar.blocks {
                rect class=(b.s.as_str()) x=(b.x) width=(b.w) height="10" {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;
    use time::Duration;

    use super::*;

    const TO: OffsetDateTime = datetime!(2026-07-10 12:00:00 UTC);
    const FROM: OffsetDateTime = datetime!(2026-07-09 12:00:00 UTC);

    fn seg(from_h: f64, to_h: f64, tailnet: Option<NodeState>, service: ServiceState) -> Segment {
        Segment {
            from: FROM + Duration::seconds_f64(from_h * 3600.0),
            to: FROM + Duration::seconds_f64(to_h * 3600.0),
            tailnet,
            service,
        }
    }

    const ON: Option<NodeState> = Some(NodeState::Online);

    #[test]
    fn no_history() {
        let b = bar(&[], FROM, TO);
        assert!(b.blocks.is_empty());
        assert_eq!(b.title, "Last 24 h: no history yet");
        let svg = svg(&b).into_string();
        assert!(
            svg.contains("<title>Last 24 h: no history yet</title>"),
            "{svg}"
        );
        assert!(svg.contains("role=\"img\" aria-label=\"Last 24 h: no history yet\""));
    }

    #[test]
    fn blocks_follow_the_segments() {
        let b = bar(
            &[
                seg(0.0, 12.0, ON, ServiceState::Up),
                seg(12.0, 18.0, ON, ServiceState::Down),
                seg(18.0, 20.0, Some(NodeState::Grace), ServiceState::Down),
                seg(20.0, 24.0, Some(NodeState::Offline), ServiceState::Unknown),
            ],
            FROM,
            TO,
        );
        let blocks: Vec<_> = b.blocks.iter().map(|b| (b.x, b.w, b.s)).collect();
        assert_eq!(
            blocks,
            [
                (0, 720, Shade::Up),
                (720, 360, Shade::Down),
                (1080, 120, Shade::Grace),
                (1200, 240, Shade::Offline)
            ]
        );
        assert_eq!(
            b.title,
            "Last 24 h: up 50.0%, down 25.0%, grace 8.3%, offline 16.7%; 3 changes"
        );
    }

    #[test]
    fn segments_outside_the_window_are_cut_and_gaps_stay_unknown() {
        let b = bar(
            &[
                seg(-5.0, 6.0, ON, ServiceState::Up),
                seg(18.0, 30.0, ON, ServiceState::Up),
            ],
            FROM,
            TO,
        );
        let blocks: Vec<_> = b.blocks.iter().map(|b| (b.x, b.w)).collect();
        assert_eq!(blocks, [(0, 360), (1080, 360)]);
        // Only known time counts; one state throughout.
        assert_eq!(b.title, "Last 24 h: up 100%; no change");
    }

    #[test]
    fn a_short_blip_still_shows() {
        // Ten seconds down in the middle of a day up.
        let mid = 12.0;
        let blip = 10.0 / 3600.0;
        let b = bar(
            &[
                seg(0.0, mid, ON, ServiceState::Up),
                seg(mid, mid + blip, ON, ServiceState::Down),
                seg(mid + blip, 24.0, ON, ServiceState::Up),
            ],
            FROM,
            TO,
        );
        let blocks: Vec<_> = b.blocks.iter().map(|b| (b.x, b.w, b.s)).collect();
        assert_eq!(
            blocks,
            [
                (0, 720, Shade::Up),
                (720, MIN_WIDTH, Shade::Down),
                (720 + MIN_WIDTH, 720 - MIN_WIDTH, Shade::Up)
            ]
        );
        assert!(
            b.title.contains("down <0.1%") || b.title.contains("down 0.1%"),
            "{}",
            b.title
        );
        assert!(b.title.ends_with("2 changes"));
    }

    #[test]
    fn a_flapping_tart_is_binned_and_bounded() {
        // A change every 30 s for 24 hours: 2,880 segments.
        let segments: Vec<Segment> = (0..2880)
            .map(|i| {
                let h = f64::from(i) / 120.0;
                let service = if i % 2 == 0 {
                    ServiceState::Up
                } else {
                    ServiceState::Down
                };
                seg(h, h + 1.0 / 120.0, ON, service)
            })
            .collect();
        let b = bar(&segments, FROM, TO);
        assert!(b.blocks.len() <= MAX_BLOCKS, "{}", b.blocks.len());
        // Every bin held a failure: all down, merged into one block.
        assert_eq!(
            b.blocks,
            [Block {
                x: 0,
                w: WIDTH,
                s: Shade::Down
            }]
        );
        assert!(b.title.ends_with("2879 changes"), "{}", b.title);
        assert!(svg(&b).into_string().len() < 1000);
    }

    #[test]
    fn a_state_that_just_began_shows_at_the_end() {
        // Down for the last two minutes.
        let b = bar(
            &[
                seg(0.0, 24.0 - 2.0 / 60.0, ON, ServiceState::Up),
                seg(24.0 - 2.0 / 60.0, 24.0, ON, ServiceState::Down),
            ],
            FROM,
            TO,
        );
        let blocks: Vec<_> = b.blocks.iter().map(|b| (b.x, b.w, b.s)).collect();
        assert_eq!(
            blocks,
            [
                (0, WIDTH - MIN_WIDTH, Shade::Up),
                (WIDTH - MIN_WIDTH, MIN_WIDTH, Shade::Down)
            ]
        );
    }

    #[test]
    fn time_before_the_first_known_state_is_background() {
        let b = bar(
            &[
                seg(0.0, 20.0, None, ServiceState::Unknown),
                seg(20.0, 24.0, ON, ServiceState::Up),
            ],
            FROM,
            TO,
        );
        assert_eq!(
            b.blocks,
            [Block {
                x: 1200,
                w: 240,
                s: Shade::Up
            }]
        );
        assert_eq!(b.title, "Last 24 h: up 100%; no change");
    }

    #[test]
    fn tailnet_state_wins_over_a_stale_probe() {
        let s = seg(0.0, 1.0, Some(NodeState::Offline), ServiceState::Up);
        assert_eq!(Shade::of(&s), Shade::Offline);
        assert_eq!(
            Shade::of(&seg(0.0, 1.0, None, ServiceState::Unknown)),
            Shade::Unknown
        );
        assert_eq!(
            Shade::of(&seg(0.0, 1.0, ON, ServiceState::Unknown)),
            Shade::Online
        );
        assert_eq!(
            Shade::of(&seg(0.0, 1.0, None, ServiceState::Down)),
            Shade::Down
        );
    }

    #[test]
    fn svg_draws_each_block_with_its_class() {
        let b = bar(
            &[
                seg(0.0, 12.0, ON, ServiceState::Up),
                seg(12.0, 24.0, ON, ServiceState::Down),
            ],
            FROM,
            TO,
        );
        let svg = svg(&b).into_string();
        assert!(
            svg.starts_with("<svg class=\"bar\" viewBox=\"0 0 1440 10\""),
            "{svg}"
        );
        assert!(svg.contains("<rect class=\"up\" x=\"0\" width=\"720\" height=\"10\"></rect>"));
        assert!(svg.contains("<rect class=\"down\" x=\"720\" width=\"720\" height=\"10\"></rect>"));
        assert!(svg.contains("aria-label=\"Last 24 h: up 50.0%, down 50.0%; 1 change\""));
    }
}
