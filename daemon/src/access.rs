//! Who may use the local API: the kernel's credentials of the connecting
//! process (`SO_PEERCRED`: uid, gid, pid) checked against an allowlist of
//! users and groups (`[api] allowed_users`, `allowed_groups`).
//!
//! The default list is root, the user fsed runs as, and the group `fsed`
//! when it exists (systemd's sysusers snippet makes it): an administrator
//! lets practice software in by adding its user to that group, as for the
//! socket file's own permissions. A group counts when it is the process's
//! primary group or one of its supplementary groups; the latter are read
//! from `/proc/<pid>/status`, whose `Uid` line must still show the
//! connecting uid. Names are looked up in `/etc/passwd` and `/etc/group`;
//! numeric ids are taken as they are.

use std::collections::{BTreeMap, BTreeSet};

/// The group whose members may connect by default.
pub const DEFAULT_GROUP: &str = "fsed";

/// The system's users and groups by name, from `/etc/passwd` and `/etc/group`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Accounts {
    users: BTreeMap<String, u32>,
    groups: BTreeMap<String, u32>,
}

impl Accounts {
    /// Reads `/etc/passwd` and `/etc/group`; a file that cannot be read names nobody.
    pub fn read_system() -> Accounts {
        let read = |path: &str| std::fs::read_to_string(path).unwrap_or_default();
        Accounts::parse(&read("/etc/passwd"), &read("/etc/group"))
    }

    /// Parses the texts of `passwd(5)` and `group(5)`: `name:password:id:…` per line.
    pub fn parse(passwd: &str, group: &str) -> Accounts {
        let ids = |text: &str| -> BTreeMap<String, u32> {
            text.lines()
                .filter_map(|line| {
                    let mut fields = line.split(':');
                    let name = fields.next()?.trim();
                    let id = fields.nth(1)?.trim().parse().ok()?;
                    (!name.is_empty() && !name.starts_with('#')).then(|| (name.to_string(), id))
                })
                .collect()
        };
        Accounts {
            users: ids(passwd),
            groups: ids(group),
        }
    }

    /// A user's uid: a numeric id as it is, else the name looked up.
    pub fn uid(&self, name: &str) -> Option<u32> {
        name.parse().ok().or_else(|| self.users.get(name).copied())
    }

    /// A group's gid: a numeric id as it is, else the name looked up.
    pub fn gid(&self, name: &str) -> Option<u32> {
        name.parse().ok().or_else(|| self.groups.get(name).copied())
    }
}

/// The allowlist as configured (`[api] allowed_users`, `allowed_groups`): names or numeric
/// ids; a list not given (`None`) means the default. Implemented by the configuration's
/// `[api]` section, so that this module needs nothing of the configuration's.
pub trait AllowedNames {
    /// Users allowed to connect, if given.
    fn allowed_users(&self) -> Option<&[String]>;
    /// Groups allowed to connect, if given.
    fn allowed_groups(&self) -> Option<&[String]>;
}

/// The uids and gids allowed to connect.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Access {
    /// Allowed users.
    pub users: BTreeSet<u32>,
    /// Allowed groups (primary or supplementary).
    pub groups: BTreeSet<u32>,
}

impl Access {
    /// The allowlist of `[api]`: each list as given, names that resolve to nothing left out
    /// (`ApiSection::validate` refused them at start); a list not given is the default — users
    /// root and `own_uid`, group [`DEFAULT_GROUP`] when it exists.
    pub fn from_config(
        section: &impl AllowedNames,
        accounts: &Accounts,
        own_uid: Option<u32>,
    ) -> Access {
        let users = match section.allowed_users() {
            Some(names) => names.iter().filter_map(|n| accounts.uid(n)).collect(),
            None => std::iter::once(0).chain(own_uid).collect(),
        };
        let groups = match section.allowed_groups() {
            Some(names) => names.iter().filter_map(|n| accounts.gid(n)).collect(),
            None => accounts.gid(DEFAULT_GROUP).into_iter().collect(),
        };
        Access { users, groups }
    }

    /// Whether a process running as `uid` with primary group `gid` may connect;
    /// `supplementary` (its other groups) is asked only when neither is allowed.
    pub fn allows(&self, uid: u32, gid: u32, supplementary: impl FnOnce() -> Vec<u32>) -> bool {
        self.users.contains(&uid)
            || self.groups.contains(&gid)
            || (!self.groups.is_empty() && supplementary().iter().any(|g| self.groups.contains(g)))
    }
}

/// The effective uid on the `Uid:` line of a `/proc/<pid>/status` text.
fn status_uid(status: &str) -> Option<u32> {
    let line = status.lines().find_map(|l| l.strip_prefix("Uid:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// The supplementary groups on the `Groups:` line of a `/proc/<pid>/status` text, when its
/// effective uid is `uid` (else the process is not, or no longer, the one that connected).
pub fn status_groups(status: &str, uid: u32) -> Vec<u32> {
    if status_uid(status) != Some(uid) {
        return Vec::new();
    }
    status
        .lines()
        .find_map(|l| l.strip_prefix("Groups:"))
        .map(|g| {
            g.split_whitespace()
                .filter_map(|x| x.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// The supplementary groups of process `pid` running as `uid` (none when unreadable).
pub fn process_groups(pid: i32, uid: u32) -> Vec<u32> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .map(|s| status_groups(&s, uid))
        .unwrap_or_default()
}

/// The effective uid fsed runs as (`None` when `/proc/self/status` cannot be read).
pub fn own_uid() -> Option<u32> {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| status_uid(&s))
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/bash\n\
        fsed:x:998:998:fsed care-sheet daemon:/var/lib/fsed:/usr/sbin/nologin\n\
        medilogic:x:1001:1001::/home/medilogic:/bin/sh\n\
        broken line\n";
    const GROUP: &str = "root:x:0:\nfsed:x:998:medilogic\nstaff:x:50:\n";

    /// An allowlist as the configuration's `[api]` section gives it.
    #[derive(Default)]
    struct Lists {
        users: Option<Vec<String>>,
        groups: Option<Vec<String>>,
    }

    impl AllowedNames for Lists {
        fn allowed_users(&self) -> Option<&[String]> {
            self.users.as_deref()
        }
        fn allowed_groups(&self) -> Option<&[String]> {
            self.groups.as_deref()
        }
    }

    fn section(users: Option<&[&str]>, groups: Option<&[&str]>) -> Lists {
        let own = |l: &[&str]| l.iter().map(|s| s.to_string()).collect();
        Lists {
            users: users.map(own),
            groups: groups.map(own),
        }
    }

    #[test]
    fn names_and_numbers_resolve() {
        let a = Accounts::parse(PASSWD, GROUP);
        assert_eq!(a.uid("medilogic"), Some(1001));
        assert_eq!(a.uid("4242"), Some(4242));
        assert_eq!(a.uid("nobody-here"), None);
        assert_eq!(a.uid("broken line"), None);
        assert_eq!(a.gid("fsed"), Some(998));
        assert_eq!(a.gid("medilogic"), None);
    }

    #[test]
    fn the_default_is_root_the_daemon_and_group_fsed_when_it_exists() {
        let a = Accounts::parse(PASSWD, GROUP);
        let access = Access::from_config(&Lists::default(), &a, Some(998));
        assert_eq!(access.users, BTreeSet::from([0, 998]));
        assert_eq!(access.groups, BTreeSet::from([998]));
        let without_group = Accounts::parse(PASSWD, "root:x:0:\n");
        let access = Access::from_config(&Lists::default(), &without_group, None);
        assert_eq!(access.users, BTreeSet::from([0]));
        assert!(access.groups.is_empty());
    }

    #[test]
    fn given_lists_replace_the_default() {
        let a = Accounts::parse(PASSWD, GROUP);
        let access = Access::from_config(
            &section(Some(&["medilogic", "2000"]), Some(&[])),
            &a,
            Some(0),
        );
        assert_eq!(access.users, BTreeSet::from([1001, 2000]));
        assert!(access.groups.is_empty());
        let access = Access::from_config(&section(None, Some(&["staff"])), &a, Some(998));
        assert_eq!(access.users, BTreeSet::from([0, 998]));
        assert_eq!(access.groups, BTreeSet::from([50]));
    }

    #[test]
    fn a_peer_is_let_in_by_its_user_its_group_or_a_supplementary_group() {
        let access = Access {
            users: BTreeSet::from([0, 998]),
            groups: BTreeSet::from([998]),
        };
        let never = || -> Vec<u32> { panic!("supplementary groups asked for no reason") };
        assert!(access.allows(0, 0, never));
        assert!(access.allows(1001, 998, never));
        assert!(access.allows(1001, 1001, || vec![27, 998]));
        assert!(!access.allows(1001, 1001, || vec![27, 100]));
        assert!(!access.allows(1001, 1001, Vec::new));
        let nobody = Access::default();
        assert!(!nobody.allows(0, 0, never));
    }

    #[test]
    fn supplementary_groups_come_from_the_status_of_the_same_user() {
        let status = "Name:\tpractice\nUid:\t1001\t1001\t1001\t1001\nGid:\t1001\t1001\t1001\t1001\nGroups:\t27 998 \n";
        assert_eq!(status_groups(status, 1001), vec![27, 998]);
        assert!(
            status_groups(status, 1002).is_empty(),
            "another user's process"
        );
        assert!(status_groups("Uid:\t1001\t1001\t1001\t1001\n", 1001).is_empty());
        assert!(status_groups("garbage", 1001).is_empty());
        let me = own_uid().expect("/proc/self/status");
        let pid = i32::try_from(std::process::id()).unwrap();
        assert!(process_groups(pid, me.wrapping_add(1)).is_empty());
        assert!(process_groups(-5, me).is_empty());
    }
}
