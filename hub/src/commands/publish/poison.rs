//! `publish --rate --template news --poison-every K [--poison-marker M]`: the chaos suite's
//! poison events. Compiled only with the `chaos` cargo feature, like the hook they are for.
//!
//! Every K-th event (seq K-1, 2K-1, ...) carries the marker in its title. A poison is an
//! ordinary, valid event that passes the default filter; it only becomes a poison for a filter
//! started with the `filter-poison` fault injection hook (see `crate::faults` and
//! `docs/reliability.md`, "Fault injection hooks"), which aborts its process on such a title.

use mt5_bus::Event;

use crate::cli::{LoadTemplate, PoisonArgs};
use crate::error::HubError;

/// The default `--poison-marker`.
pub(crate) const DEFAULT_MARKER: &str = "CHAOS-POISON";

/// Which events of a load are poisons, and what marks them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Poison {
    /// Every `every`-th event (at least 1).
    every: u64,
    /// Put into the title.
    marker: String,
}

impl Poison {
    /// The poisons `args` ask for (`None` without `--poison-every`).
    ///
    /// # Errors
    /// [`HubError::Usage`] when `--poison-every` comes without `--template news`: only an
    /// article has a title to mark.
    pub(crate) fn from_args(args: &PoisonArgs, template: LoadTemplate) -> Result<Option<Poison>, HubError> {
        let Some(every) = args.poison_every.filter(|k| *k > 0) else {
            return Ok(None);
        };
        if template != LoadTemplate::News {
            return Err(HubError::Usage("--poison-every needs --template news".into()));
        }
        Ok(Some(Poison {
            every,
            marker: args.poison_marker.clone().unwrap_or_else(|| DEFAULT_MARKER.to_string()),
        }))
    }

    /// Whether event `seq` is a poison.
    fn is_poison(&self, seq: u64) -> bool {
        (seq + 1) % self.every == 0
    }

    /// Marks event `seq` (a news template event) when it is a poison: the marker goes into its
    /// title, before the `#<seq>` that keeps titles unique.
    pub(crate) fn apply(&self, event: &mut Event, seq: u64) {
        if !self.is_poison(seq) {
            return;
        }
        let mut data = event.data.to_value();
        if let Some(title) = data.pointer_mut("/article/title") {
            let plain = title.as_str().unwrap_or_default();
            let marked = match plain.rsplit_once(" #") {
                Some((head, tail)) => format!("{head} {} #{tail}", self.marker),
                None => format!("{plain} {}", self.marker),
            };
            *title = marked.into();
            event.data = data.into();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::template::news_event;
    use super::*;
    use mt5_news::filter::{Decision, FilterConfig, FilterRules, RawNews};

    fn poison(every: u64, marker: Option<&str>) -> Poison {
        let args = PoisonArgs {
            poison_every: Some(every),
            poison_marker: marker.map(str::to_string),
        };
        Poison::from_args(&args, LoadTemplate::News).unwrap().unwrap()
    }

    /// Every K-th event is a poison; none without `--poison-every`.
    #[test]
    fn every_kth_event_is_a_poison() {
        let p = poison(10, None);
        let seqs: Vec<u64> = (0..30).filter(|s| p.is_poison(*s)).collect();
        assert_eq!(seqs, vec![9, 19, 29]);
        let none = PoisonArgs {
            poison_every: None,
            poison_marker: None,
        };
        assert_eq!(Poison::from_args(&none, LoadTemplate::Seq).unwrap(), None);
    }

    /// `--poison-every` needs the news template: a `seq` event has no title to mark.
    #[test]
    fn poisons_need_the_news_template() {
        let args = PoisonArgs {
            poison_every: Some(3),
            poison_marker: None,
        };
        let err = Poison::from_args(&args, LoadTemplate::Seq).unwrap_err();
        assert!(err.to_string().contains("--template news"), "{err}");
    }

    /// A poison's title carries the marker (default `CHAOS-POISON`) and stays unique; it still
    /// passes the default filter rules, so only the hook makes it a poison; other events are
    /// left alone.
    #[test]
    fn a_poison_is_marked_and_still_passes_the_filter() {
        let rules = FilterRules::new(FilterConfig::default()).unwrap();
        for (p, marker) in [(poison(3, None), DEFAULT_MARKER), (poison(3, Some("BAD")), "BAD")] {
            let mut good = news_event("s", 1);
            let before = good.data.clone();
            p.apply(&mut good, 1);
            assert_eq!(good.data, before, "seq 1 is not a poison");
            let mut bad = news_event("s", 2);
            p.apply(&mut bad, 2);
            let data = bad.data.to_value();
            let title = data["article"]["title"].as_str().unwrap();
            assert!(title.contains(marker) && title.ends_with(" #2"), "{title}");
            let news = RawNews::from_json(bad.data.get(), None).unwrap();
            let decision = rules.decide(&news, chrono::Utc::now());
            assert!(matches!(decision, Decision::Pass { .. }), "{decision:?}");
        }
    }
}
