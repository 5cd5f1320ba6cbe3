//! The nftables ruleset of one server (pure): Quarry's own table
//! `inet quarry`, flushed and recreated in one `nft -f` transaction.
//!
//! The filter sits on the `prerouting` hook at priority -150, before
//! Docker's DNAT (-100): a port Docker publishes is rewritten there and
//! then only meets the `forward` hook, never `input`, so a filter on `input`
//! would leave every published container port open. One chain before DNAT
//! sees all inbound traffic with its original destination port.
//!
//! What is accepted: established and related traffic, loopback, the
//! engine's own bridges (containers talking out, to each other, to the
//! host), ICMP (IPv6 needs it to work at all), DHCP answers, any traffic
//! from the fleet's addresses, TCP 22 from anywhere, and on the router (the
//! HQ) its public ports. Every other new inbound packet is dropped.

use std::collections::BTreeSet;
use std::fmt::Write;
use std::net::IpAddr;

/// The name of Quarry's table (family `inet`).
pub const TABLE: &str = "quarry";

/// Always open on every server, so the operator's SSH never locks out.
pub const SSH_PORT: u16 = 22;

pub use crate::network::{Net, parse_allow};

/// What one server's rules say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rules {
    /// Addresses whose traffic is accepted: every server of the fleet and
    /// the addresses the HQ reaches them from.
    pub fleet: BTreeSet<IpAddr>,
    /// More sources accepted (config.yml `network.allow`): say, the public
    /// address a NAT gives the HQ, or an office network.
    pub allow: Vec<Net>,
    /// TCP ports open to anyone besides 22: the router's 80 and 443 (and its
    /// own SSH endpoint); none on other servers.
    pub public_tcp: BTreeSet<u16>,
}

/// The `nft -f` file: create-if-missing, delete, define again, so the
/// whole change is one atomic transaction and leaves nothing of the old
/// table behind.
pub fn ruleset(rules: &Rules) -> String {
    let mut nets: BTreeSet<Net> = rules
        .fleet
        .iter()
        .map(|&addr| Net {
            addr,
            prefix: if addr.is_ipv4() { 32 } else { 128 },
        })
        .collect();
    nets.extend(rules.allow.iter().copied());
    let v4: Vec<String> = nets
        .iter()
        .filter(|n| n.addr.is_ipv4())
        .map(|n| n.to_string())
        .collect();
    let v6: Vec<String> = nets
        .iter()
        .filter(|n| n.addr.is_ipv6())
        .map(|n| n.to_string())
        .collect();
    let mut ports: BTreeSet<u16> = rules.public_tcp.clone();
    ports.insert(SSH_PORT);
    let ports: Vec<String> = ports.iter().map(|p| p.to_string()).collect();

    let mut s = String::new();
    s.push_str("# Quarry network lockdown (rendered by quarry; applied with nft -f)\n");
    let _ = writeln!(s, "table inet {TABLE}");
    let _ = writeln!(s, "delete table inet {TABLE}");
    let _ = writeln!(s, "table inet {TABLE} {{");
    set(&mut s, "fleet4", "ipv4_addr", &v4);
    set(&mut s, "fleet6", "ipv6_addr", &v6);
    s.push_str("\tchain prerouting {\n");
    s.push_str("\t\ttype filter hook prerouting priority -150; policy accept;\n");
    s.push_str("\t\tct state established,related accept\n");
    s.push_str("\t\tiifname \"lo\" accept\n");
    s.push_str("\t\tiifname \"docker0\" accept\n");
    s.push_str("\t\tiifname \"br-*\" accept\n");
    s.push_str("\t\tmeta l4proto { icmp, ipv6-icmp } accept\n");
    s.push_str("\t\tudp sport 67 udp dport 68 accept\n");
    s.push_str("\t\tudp sport 547 udp dport 546 accept\n");
    s.push_str("\t\tip saddr @fleet4 accept\n");
    s.push_str("\t\tip6 saddr @fleet6 accept\n");
    let _ = writeln!(s, "\t\ttcp dport {{ {} }} accept", ports.join(", "));
    s.push_str("\t\tcounter drop\n");
    s.push_str("\t}\n");
    s.push_str("}\n");
    s
}

/// The `nft -f` file that removes the table, whether it exists or not.
pub fn removal() -> String {
    format!("table inet {TABLE}\ndelete table inet {TABLE}\n")
}

fn set(s: &mut String, name: &str, kind: &str, elements: &[String]) {
    let _ = writeln!(s, "\tset {name} {{");
    let _ = writeln!(s, "\t\ttype {kind}");
    // Networks and addresses in one set: intervals, overlaps merged.
    s.push_str("\t\tflags interval\n");
    s.push_str("\t\tauto-merge\n");
    if !elements.is_empty() {
        let _ = writeln!(s, "\t\telements = {{ {} }}", elements.join(", "));
    }
    s.push_str("\t}\n");
}

/// A short stable digest of a ruleset (shown by `network`).
pub fn hash(text: &str) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(text.as_bytes());
    digest[..8].iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addrs(list: &[&str]) -> BTreeSet<IpAddr> {
        list.iter().map(|a| a.parse().unwrap()).collect()
    }

    #[test]
    fn a_server_opens_22_and_its_fleet_only() {
        let rules = Rules {
            fleet: addrs(&["10.214.0.12", "10.214.0.1", "fd00::7"]),
            allow: Vec::new(),
            public_tcp: BTreeSet::new(),
        };
        assert_eq!(
            ruleset(&rules),
            "# Quarry network lockdown (rendered by quarry; applied with nft -f)
table inet quarry
delete table inet quarry
table inet quarry {
\tset fleet4 {
\t\ttype ipv4_addr
\t\tflags interval
\t\tauto-merge
\t\telements = { 10.214.0.1, 10.214.0.12 }
\t}
\tset fleet6 {
\t\ttype ipv6_addr
\t\tflags interval
\t\tauto-merge
\t\telements = { fd00::7 }
\t}
\tchain prerouting {
\t\ttype filter hook prerouting priority -150; policy accept;
\t\tct state established,related accept
\t\tiifname \"lo\" accept
\t\tiifname \"docker0\" accept
\t\tiifname \"br-*\" accept
\t\tmeta l4proto { icmp, ipv6-icmp } accept
\t\tudp sport 67 udp dport 68 accept
\t\tudp sport 547 udp dport 546 accept
\t\tip saddr @fleet4 accept
\t\tip6 saddr @fleet6 accept
\t\ttcp dport { 22 } accept
\t\tcounter drop
\t}
}
"
        );
    }

    #[test]
    fn the_router_opens_its_public_ports_too() {
        let rules = Rules {
            fleet: addrs(&["192.0.2.10"]),
            allow: vec![
                Net::parse("198.51.100.0/24").unwrap(),
                Net::parse("2001:db8::/32").unwrap(),
            ],
            public_tcp: [80, 443, 2222].into_iter().collect(),
        };
        let text = ruleset(&rules);
        assert!(
            text.contains("\t\ttcp dport { 22, 80, 443, 2222 } accept\n"),
            "{text}"
        );
        assert!(
            text.contains("\t\telements = { 192.0.2.10, 198.51.100.0/24 }\n"),
            "{text}"
        );
        assert!(
            text.contains("\t\telements = { 2001:db8::/32 }\n"),
            "{text}"
        );
    }

    #[test]
    fn an_empty_set_is_still_declared() {
        let text = ruleset(&Rules {
            fleet: addrs(&["192.0.2.10"]),
            allow: Vec::new(),
            public_tcp: BTreeSet::new(),
        });
        // The rule naming it must load.
        assert!(
            text.contains(
                "\tset fleet6 {\n\t\ttype ipv6_addr\n\t\tflags interval\n\t\tauto-merge\n\t}\n"
            ),
            "{text}"
        );
    }

    #[test]
    fn allowed_networks_are_checked() {
        assert_eq!(Net::parse("10.0.0.0/8").unwrap().to_string(), "10.0.0.0/8");
        assert_eq!(Net::parse("192.0.2.7").unwrap().to_string(), "192.0.2.7");
        assert_eq!(
            Net::parse("2001:db8::/32").unwrap().to_string(),
            "2001:db8::/32"
        );
        assert_eq!(
            parse_allow(&["10.0.0.1/8".into()]).unwrap_err().to_string(),
            "config.yml: network.allow: \"10.0.0.1/8\" has host bits set past /8"
        );
        assert_eq!(
            parse_allow(&["10.0.0.0/33".into()])
                .unwrap_err()
                .to_string(),
            "config.yml: network.allow: \"10.0.0.0/33\": the prefix length is 0 to 32"
        );
        assert_eq!(
            parse_allow(&["office".into()]).unwrap_err().to_string(),
            "config.yml: network.allow: \"office\" is not an address or a network such as 192.0.2.0/24"
        );
        assert!(Net::parse("0.0.0.0/0").is_ok());
        assert!(Net::parse("2001:db8::1/32").is_err());
    }

    #[test]
    fn removal_works_whether_the_table_exists_or_not() {
        assert_eq!(removal(), "table inet quarry\ndelete table inet quarry\n");
        assert_eq!(hash("x").len(), 16);
        assert_eq!(hash("x"), hash("x"));
    }
}
