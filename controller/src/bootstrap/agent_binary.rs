//! The agent binary `ctl bootstrap` installs, read once before any host is contacted: its
//! checksum, and what a host needs to run it (the CPU architecture in its ELF header, the
//! newest glibc symbol version it links against), so that a host that cannot run it is
//! refused before anything on it changes.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use object::elf;
use object::read::elf::{ElfFile64, FileHeader};
use object::Endianness;
use sha2::{Digest, Sha256};

/// The binary as read, with what it needs of a host.
#[derive(Debug, Clone)]
pub struct AgentBinary {
    pub path: PathBuf,
    pub bytes: Vec<u8>,
    /// SHA-256 of the bytes, lowercase hex.
    pub sha256: String,
    /// The `uname -m` names of the hosts that can run it.
    pub arches: &'static [&'static str],
    /// The newest `GLIBC_x.y` version it needs; `None` for a binary without glibc (static,
    /// musl).
    pub glibc: Option<GlibcVersion>,
}

/// A glibc version, compared numerically (2.9 < 2.17 < 2.34).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct GlibcVersion {
    pub major: u32,
    pub minor: u32,
}

impl std::fmt::Display for GlibcVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

impl GlibcVersion {
    /// Reads `2.36` out of `GLIBC_2.36`, `GLIBC_2.2.5`, or `glibc 2.36` as
    /// `getconf GNU_LIBC_VERSION` prints it.
    pub fn parse(text: &str) -> Option<GlibcVersion> {
        let digits = text
            .strip_prefix("GLIBC_")
            .or_else(|| text.strip_prefix("glibc "))?;
        let mut parts = digits.trim().split('.');
        let major = parts.next()?.parse().ok()?;
        let minor = parts.next().unwrap_or("0").parse().ok()?;
        Some(GlibcVersion { major, minor })
    }
}

impl AgentBinary {
    /// Reads the binary at `path`.
    ///
    /// # Errors
    /// It cannot be read, or it is not a 64-bit ELF executable of an architecture we know.
    pub fn read(path: &Path) -> Result<AgentBinary> {
        let bytes =
            std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
        let (arches, glibc) = needs(&bytes)
            .with_context(|| format!("{} is not an agent binary ctl can check", path.display()))?;
        Ok(AgentBinary {
            path: path.to_owned(),
            sha256: hex::encode(Sha256::digest(&bytes)),
            bytes,
            arches,
            glibc,
        })
    }

    /// Why a host with `uname -m` `arch` and `getconf GNU_LIBC_VERSION` `libc` cannot run
    /// this binary, if it cannot.
    pub fn refusal(&self, arch: &str, libc: &str) -> Option<String> {
        if !self.arches.contains(&arch) {
            return Some(format!(
                "the agent binary is for {}, the host is {arch:?}",
                self.arches.join("/")
            ));
        }
        let needed = self.glibc?;
        match GlibcVersion::parse(libc) {
            None => Some(format!(
                "the agent binary needs glibc {needed}, the host has none (`getconf \
                 GNU_LIBC_VERSION` says {libc:?}); build a static (musl) agent for it"
            )),
            Some(has) if has < needed => Some(format!(
                "the agent binary needs glibc {needed}, the host has {has}"
            )),
            Some(_) => None,
        }
    }
}

/// The architectures and glibc version an ELF file needs.
fn needs(data: &[u8]) -> Result<(&'static [&'static str], Option<GlibcVersion>)> {
    let file = ElfFile64::<Endianness>::parse(data).context("not a 64-bit ELF file")?;
    let endian = file.endian();
    let header = file.elf_header();
    if header.e_type(endian) != elf::ET_EXEC && header.e_type(endian) != elf::ET_DYN {
        bail!("not an executable");
    }
    let arches: &'static [&'static str] = match header.e_machine(endian) {
        elf::EM_X86_64 => &["x86_64"],
        elf::EM_AARCH64 => &["aarch64", "arm64"],
        elf::EM_RISCV => &["riscv64"],
        elf::EM_PPC64 => &["ppc64le", "ppc64"],
        elf::EM_S390 => &["s390x"],
        elf::EM_LOONGARCH => &["loongarch64"],
        other => bail!("unknown CPU architecture (ELF machine {other})"),
    };
    let sections = file.elf_section_table();
    let mut newest: Option<GlibcVersion> = None;
    if let Some((mut needed, link)) = sections
        .gnu_verneed(endian, data)
        .context("unreadable symbol versions")?
    {
        let strings = sections
            .strings(endian, data, link)
            .context("unreadable symbol version names")?;
        while let Some((_, mut versions)) = needed.next().context("unreadable version need")? {
            while let Some(version) = versions.next().context("unreadable version")? {
                let name = version
                    .name(endian, strings)
                    .context("unreadable version name")?;
                let found = std::str::from_utf8(name).ok().and_then(GlibcVersion::parse);
                newest = newest.max(found);
            }
        }
    }
    Ok((arches, newest))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glibc_versions_compare_as_numbers() {
        let v = |text| GlibcVersion::parse(text).unwrap();
        assert!(v("GLIBC_2.9") < v("GLIBC_2.17"));
        assert_eq!(v("GLIBC_2.2.5"), v("glibc 2.2"));
        assert_eq!(v("glibc 2.36").to_string(), "2.36");
        assert_eq!(GlibcVersion::parse("musl"), None);
    }

    #[test]
    fn this_test_binary_is_read_as_the_agent_would_be() {
        // The test binary is linked as the agent is, for the machine the tests run on.
        let exe = std::env::current_exe().unwrap();
        let binary = AgentBinary::read(&exe).unwrap();
        assert_eq!(binary.sha256.len(), 64);
        let arch = std::env::consts::ARCH;
        assert!(binary.arches.contains(&arch), "{:?}", binary.arches);
        let glibc = binary.glibc.expect("a gnu build links against glibc");
        assert!(glibc >= GlibcVersion { major: 2, minor: 2 });
        assert_eq!(binary.refusal(arch, &format!("glibc {glibc}")), None);
        let older = format!("glibc {}.{}", glibc.major, glibc.minor - 1);
        assert!(binary
            .refusal(arch, &older)
            .unwrap()
            .contains("needs glibc"));
        assert!(binary
            .refusal("sparc64", "glibc 9.99")
            .unwrap()
            .contains("sparc64"));
        assert!(AgentBinary::read(Path::new("/etc/hostname")).is_err());
    }
}
