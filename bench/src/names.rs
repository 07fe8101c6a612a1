//! TART names: mostly `tart-00001`-style serials, with city-like names mixed in.

/// City-like bases (100 real observatory towns and cities, separated by
/// spaces); a base used again gets `-2`, `-3`, ...
const CITIES: &str = "\
    rhodes dunedin zurich hobart perth darwin cairns stellenbosch sutherland mauna-kea la-palma \
    tenerife atacama paranal la-silla siding-spring narrabri parkes mopra karoo hartebeesthoek \
    christchurch auckland wellington nelson oamaru tekapo invercargill gisborne napier ushuaia \
    valparaiso arequipa quito bogota nairobi kampala accra dakar tunis reykjavik tromso kiruna oulu \
    bergen lund uppsala aarhus delft leiden ghent porto evora granada malaga sevilla bologna \
    trieste padova graz brno krakow torun riga tartu vilnius lviv odesa tbilisi yerevan baku almaty \
    bishkek dushanbe ulaanbaatar lhasa kunming nanjing hefei seoul busan kyoto nagoya sendai \
    sapporo nobeyama mitaka manila cebu hanoi hue bangkok chiang-mai penang bandung denpasar suva \
    apia port-vila alice-springs";

/// How the names are made, for the output.
pub const DESCRIPTION: &str = "4 of 5 names are serials `tart-00001`, `tart-00002`, … (numbered by position), \
1 of 5 is a city-like name from a list of 100 (`rhodes`, `dunedin`, `mauna-kea`, `hue`, …; a name used again gets `-2`, `-3`, …)";

/// `n` distinct names, in generation order.
pub fn names(n: usize) -> Vec<String> {
    let cities: Vec<&str> = CITIES.split_whitespace().collect();
    (0..n)
        .map(|i| {
            if i % 5 == 4 {
                let k = i / 5;
                let base = cities[k % cities.len()];
                match k / cities.len() {
                    0 => base.to_string(),
                    round => format!("{base}-{}", round + 1),
                }
            } else {
                format!("tart-{:05}", i + 1)
            }
        })
        .collect()
}

/// The order in which a Caddyfile with one `handle_path /<name>/*` block per
/// name lists the routes once adapted: the adapter sorts `handle_path`
/// routes by path length, longest first, keeping the written (alphabetical)
/// order among equal lengths.
pub fn naive_order(names: &[String]) -> Vec<String> {
    let mut v = names.to_vec();
    v.sort();
    v.sort_by_key(|n| std::cmp::Reverse(n.len()));
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_dns_labels() {
        assert_eq!(CITIES.split_whitespace().count(), 100);
        let v = names(10_000);
        let set: std::collections::BTreeSet<&String> = v.iter().collect();
        assert_eq!(set.len(), v.len());
        assert!(v
            .iter()
            .all(|n| tart_sync::headscale::is_valid_dns_label(n)));
    }

    #[test]
    fn naive_order_is_longest_first() {
        let v = naive_order(&names(10));
        assert_eq!(v.first().map(String::as_str), Some("tart-00001"));
        assert_eq!(v.last().map(String::as_str), Some("rhodes"));
    }
}
