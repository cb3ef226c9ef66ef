//! The local file system edge for trees of files: a package directory read
//! into a [`Package`](crate::core::package::Package) ([`package`]), a layer
//! unpacked into a directory ([`unpack`]), and package files opened for the
//! layer writer ([`LocalFiles`]). The rules live in `core`; this module only
//! walks, opens and writes.

pub mod package;
pub mod unpack;

use std::io::{self, Read};
use std::path::Path;

use crate::core::archive::Files;

/// Package files, read from where the walk found them.
pub struct LocalFiles;

impl Files for LocalFiles {
    fn open(&self, source: &Path) -> io::Result<Box<dyn Read + '_>> {
        Ok(Box::new(std::fs::File::open(source)?))
    }
}
