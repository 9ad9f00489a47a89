//! The order in which a node reads its queues: strict (the order given), or weighted
//! (`--queues high=5,default=3,low=1`) by smooth weighted round robin, so that under load each
//! queue gets its share of reads, in a fixed interleaving (H D H L H D H D H for 5,3,1), and none
//! starves.

use stevedore::Destination;

/// One queue and its weight.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueSpec {
    /// The queue.
    pub destination: Destination,
    /// Its weight, if weights were given.
    pub weight: Option<u32>,
}

/// Parses `name` or `name=weight`.
pub fn parse_queue(text: &str) -> stevedore::Result<QueueSpec> {
    let (name, weight) = match text.trim().split_once('=') {
        Some((name, weight)) => {
            let weight: u32 = weight
                .trim()
                .parse()
                .ok()
                .filter(|w| *w > 0)
                .ok_or_else(|| {
                    stevedore::Error::InvalidOptions(format!(
                        "queue weight in `{text}` must be a positive integer, e.g. high=5"
                    ))
                })?;
            (name.trim(), Some(weight))
        }
        None => (text.trim(), None),
    };
    Ok(QueueSpec {
        destination: Destination::queue(name)?,
        weight,
    })
}

/// Chooses the read order of the shared queues.
#[derive(Debug)]
pub enum Priorities {
    /// Always in the order given.
    Strict(Vec<Destination>),
    /// Smooth weighted round robin; each entry: queue, weight, current score.
    Weighted(Vec<(Destination, i64, i64)>),
}

impl Priorities {
    /// Weighted when any queue has a weight (the others weigh 1), else strict.
    pub fn new(queues: &[QueueSpec]) -> Self {
        if queues.iter().all(|q| q.weight.is_none()) {
            return Self::Strict(queues.iter().map(|q| q.destination.clone()).collect());
        }
        Self::Weighted(
            queues
                .iter()
                .map(|q| (q.destination.clone(), i64::from(q.weight.unwrap_or(1)), 0))
                .collect(),
        )
    }

    /// The order of the next read: for weighted queues, the round robin's pick first, then the
    /// rest by weight.
    pub fn next_order(&mut self) -> Vec<Destination> {
        match self {
            Self::Strict(order) => order.clone(),
            Self::Weighted(queues) => {
                let total: i64 = queues.iter().map(|(_, w, _)| w).sum();
                for (_, weight, current) in queues.iter_mut() {
                    *current += *weight;
                }
                let pick = (0..queues.len())
                    .max_by_key(|&i| (queues[i].2, -(i as i64)))
                    .unwrap_or(0);
                queues[pick].2 -= total;
                let mut order = vec![queues[pick].0.clone()];
                let mut rest: Vec<&(Destination, i64, i64)> = queues
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| *i != pick)
                    .map(|(_, q)| q)
                    .collect();
                rest.sort_by_key(|(_, weight, _)| -weight);
                order.extend(rest.into_iter().map(|(d, _, _)| d.clone()));
                order
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_interleave_smoothly_and_fairly() {
        let specs: Vec<QueueSpec> = ["high=5", "default=3", "low=1"]
            .iter()
            .map(|q| parse_queue(q).unwrap())
            .collect();
        let mut priorities = Priorities::new(&specs);
        let firsts: String = (0..9)
            .map(|_| {
                priorities.next_order()[0]
                    .to_string()
                    .chars()
                    .next()
                    .unwrap()
            })
            .collect();
        assert_eq!(firsts, "hdhlhdhdh");
        assert_eq!(priorities.next_order().len(), 3);
    }

    #[test]
    fn without_weights_the_order_is_strict() {
        let specs: Vec<QueueSpec> = ["a", "b"].iter().map(|q| parse_queue(q).unwrap()).collect();
        let mut priorities = Priorities::new(&specs);
        for _ in 0..3 {
            assert_eq!(
                priorities.next_order(),
                vec![
                    Destination::queue("a").unwrap(),
                    Destination::queue("b").unwrap()
                ]
            );
        }
    }

    #[test]
    fn bad_weights_are_refused() {
        assert!(parse_queue("high=0").is_err());
        assert!(parse_queue("high=x").is_err());
        assert!(parse_queue("bad name=2").is_err());
    }
}
