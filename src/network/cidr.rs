//! The pure side of networks: IPv4 subnets and the pool they are cut from
//! (config.yml's `network.pool`, `network.prefix`), the host's routes as
//! `/proc/net/route` prints them, and the addresses `network.allow` names.
//! No I/O; errors say which text was wrong and which config key held it.

use std::fmt;
use std::net::IpAddr;

use serde::Deserialize;

/// Why a text is not an address or a network.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddrError {
    #[error("{0:?} is not an IPv4 network such as 10.201.0.0/16")]
    NotIpv4Network(String),
    #[error("{0:?} is not an address or a network such as 192.0.2.0/24")]
    NotAddress(String),
    #[error("{text:?}: the prefix length is 0 to {full}")]
    PrefixLength { text: String, full: u8 },
    #[error("{text:?} has host bits set past /{prefix}")]
    HostBits { text: String, prefix: u8 },
}

/// A wrong `network` section of config.yml, by key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NetConfigError {
    #[error("config.yml: network.pool: {0}")]
    Pool(AddrError),
    #[error("config.yml: network.allow: {0}")]
    Allow(AddrError),
    #[error("config.yml: network.prefix: use a length from {min} to 29, found {found}")]
    Prefix { min: u8, found: u8 },
}

/// An IPv4 network: address and prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Cidr {
    pub addr: u32,
    pub prefix: u8,
}

impl Cidr {
    pub fn parse(text: &str) -> Result<Cidr, AddrError> {
        let bad = || AddrError::NotIpv4Network(text.to_string());
        let (ip, prefix) = text.trim().split_once('/').ok_or_else(bad)?;
        let ip: std::net::Ipv4Addr = ip.parse().map_err(|_| bad())?;
        let prefix: u8 = prefix.parse().map_err(|_| bad())?;
        if prefix > 32 {
            return Err(bad());
        }
        Ok(Cidr {
            addr: u32::from(ip) & mask(prefix),
            prefix,
        })
    }

    fn last(self) -> u32 {
        self.addr | !mask(self.prefix)
    }

    pub fn overlaps(self, other: Cidr) -> bool {
        self.addr <= other.last() && other.addr <= self.last()
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", std::net::Ipv4Addr::from(self.addr), self.prefix)
    }
}

fn mask(prefix: u8) -> u32 {
    if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - prefix)
    }
}

/// `network:` in config.yml.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct NetworkConfig {
    /// The range app subnets are cut from.
    pub pool: String,
    /// The prefix length of each app's subnet.
    pub prefix: u8,
    /// Keep every server's nftables table `inet quarry` (docs/network.md).
    pub lockdown: bool,
    /// More sources the lockdown accepts: addresses or networks.
    pub allow: Vec<String>,
}

impl Default for NetworkConfig {
    fn default() -> NetworkConfig {
        NetworkConfig {
            pool: "10.201.0.0/16".into(),
            prefix: 26,
            lockdown: false,
            allow: Vec::new(),
        }
    }
}

impl NetworkConfig {
    /// The pool and prefix, checked.
    pub fn parsed(&self) -> Result<(Cidr, u8), NetConfigError> {
        parse_allow(&self.allow)?;
        let pool = Cidr::parse(&self.pool).map_err(NetConfigError::Pool)?;
        if self.prefix < pool.prefix || !(16..=29).contains(&self.prefix) {
            return Err(NetConfigError::Prefix {
                min: pool.prefix.max(16),
                found: self.prefix,
            });
        }
        Ok((pool, self.prefix))
    }
}

/// The first `/prefix` subnet of `pool` that overlaps nothing in `taken`.
pub fn pick(pool: Cidr, prefix: u8, taken: &[Cidr]) -> Option<Cidr> {
    let step = 1u64 << (32 - prefix);
    let end = u64::from(pool.last());
    let mut taken: Vec<Cidr> = taken.iter().copied().filter(|t| t.overlaps(pool)).collect();
    taken.sort();
    let mut at = u64::from(pool.addr);
    // Taken ranges in address order: the first gap of a whole step wins.
    for t in taken {
        if at + step - 1 < u64::from(t.addr) {
            break;
        }
        if u64::from(t.last()) >= at {
            at = (u64::from(t.last()) + 1).div_ceil(step) * step;
        }
    }
    (at + step - 1 <= end).then_some(Cidr {
        addr: at as u32,
        prefix,
    })
}

/// A free `/prefix` subnet of `pool`, searched from the `start`th one on
/// (wrapping): Quarrys of engines that share one host's routes start at
/// different places, so they rarely reach for the same subnet at once.
pub fn pick_from(pool: Cidr, prefix: u8, taken: &[Cidr], start: u64) -> Option<Cidr> {
    let count = 1u64 << (prefix - pool.prefix);
    let step = 1u64 << (32 - prefix);
    (0..count)
        .map(|i| Cidr {
            addr: (u64::from(pool.addr) + ((start + i) % count) * step) as u32,
            prefix,
        })
        .find(|c| !taken.iter().any(|t| t.overlaps(*c)))
}

/// The IPv4 routes of this host (`/proc/net/route`), the default route left out.
/// The kernel prints each address as the hex of its in-memory word, so the
/// bytes come out reversed on the little-endian machines Quarry runs on.
pub fn host_routes(text: &str) -> Vec<Cidr> {
    let hex = |s: &str| u32::from_str_radix(s, 16).ok().map(u32::swap_bytes);
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let cols: Vec<&str> = line.split_whitespace().collect();
            let addr = hex(cols.get(1)?)?;
            let prefix = hex(cols.get(7)?)?.count_ones() as u8;
            (prefix > 0).then_some(Cidr {
                addr: addr & mask(prefix),
                prefix,
            })
        })
        .collect()
}

/// An address or a network (`10.0.0.0/8`, `2001:db8::/32`) config.yml's
/// `network.allow` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Net {
    pub addr: IpAddr,
    pub prefix: u8,
}

impl std::fmt::Display for Net {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let full = if self.addr.is_ipv4() { 32 } else { 128 };
        if self.prefix == full {
            write!(f, "{}", self.addr)
        } else {
            write!(f, "{}/{}", self.addr, self.prefix)
        }
    }
}

impl Net {
    /// `ADDRESS` or `ADDRESS/PREFIX`, with no host bits set past the prefix.
    pub fn parse(s: &str) -> Result<Net, AddrError> {
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = addr
            .parse()
            .map_err(|_| AddrError::NotAddress(s.to_string()))?;
        let full: u8 = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => full,
            Some(p) => p.parse::<u8>().ok().filter(|p| *p <= full).ok_or_else(|| {
                AddrError::PrefixLength {
                    text: s.to_string(),
                    full,
                }
            })?,
        };
        let bits: u128 = match addr {
            IpAddr::V4(a) => u128::from(u32::from(a)),
            IpAddr::V6(a) => u128::from(a),
        };
        let host_bits = u32::from(full - prefix);
        let host_mask = match host_bits {
            0 => 0,
            128 => u128::MAX,
            n => (1u128 << n) - 1,
        };
        if bits & host_mask != 0 {
            return Err(AddrError::HostBits {
                text: s.to_string(),
                prefix,
            });
        }
        Ok(Net { addr, prefix })
    }
}

/// config.yml `network.allow`, checked.
pub fn parse_allow(list: &[String]) -> Result<Vec<Net>, NetConfigError> {
    list.iter()
        .map(|s| Net::parse(s).map_err(NetConfigError::Allow))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(s: &str) -> Cidr {
        Cidr::parse(s).unwrap()
    }

    #[test]
    fn picks_the_first_free_subnet_past_taken_ranges() {
        let pool = c("10.201.0.0/16");
        assert_eq!(pick(pool, 26, &[]), Some(c("10.201.0.0/26")));
        assert_eq!(
            pick(pool, 26, &[c("10.201.0.0/26"), c("10.201.0.64/26")]),
            Some(c("10.201.0.128/26"))
        );
        // A wide host route inside the pool is skipped whole.
        assert_eq!(
            pick(pool, 26, &[c("10.201.0.0/20")]),
            Some(c("10.201.16.0/26"))
        );
        assert_eq!(pick(pool, 26, &[c("10.0.0.0/8")]), None);
        assert_eq!(
            pick(c("10.201.0.0/25"), 26, &[c("10.201.0.0/26")]),
            Some(c("10.201.0.64/26"))
        );
    }

    #[test]
    fn a_search_from_anywhere_wraps_around_the_pool() {
        let pool = c("10.201.0.0/24");
        assert_eq!(pick_from(pool, 26, &[], 2), Some(c("10.201.0.128/26")));
        let taken = [c("10.201.0.128/25")];
        assert_eq!(pick_from(pool, 26, &taken, 2), Some(c("10.201.0.0/26")));
        assert_eq!(pick_from(pool, 26, &[c("10.201.0.0/24")], 1), None);
    }

    #[test]
    fn a_pool_of_sixteen_bits_holds_a_thousand_apps() {
        let pool = c("10.201.0.0/16");
        let mut taken = Vec::new();
        while let Some(next) = pick(pool, 26, &taken) {
            taken.push(next);
        }
        assert_eq!(taken.len(), 1024);
        assert_eq!(taken.last().unwrap().to_string(), "10.201.255.192/26");
    }

    #[test]
    fn reads_host_routes() {
        let text = "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
eth0\t00000000\t010200C0\t0003\t0\t0\t0\t00000000\t0\t0\t0\n\
docker0\t000011AC\t00000000\t0001\t0\t0\t0\t0000FFFF\t0\t0\t0\n\
eth0\t000200C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n";
        assert_eq!(
            host_routes(text),
            vec![c("172.17.0.0/16"), c("192.0.2.0/24")]
        );
    }

    #[test]
    fn config_errors_name_the_key() {
        let bad = NetworkConfig {
            pool: "10.201.0.0".into(),
            prefix: 26,
            lockdown: false,
            allow: Vec::new(),
        };
        assert_eq!(
            bad.parsed().unwrap_err().to_string(),
            "config.yml: network.pool: \"10.201.0.0\" is not an IPv4 network such as 10.201.0.0/16"
        );
        let small = NetworkConfig {
            pool: "10.201.0.0/24".into(),
            prefix: 20,
            lockdown: false,
            allow: Vec::new(),
        };
        assert!(
            small
                .parsed()
                .unwrap_err()
                .to_string()
                .contains("network.prefix")
        );
    }
}
