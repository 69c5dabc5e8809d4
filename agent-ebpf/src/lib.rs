//! Empty library target: it lets agent list this crate as a build-dependency, so cargo rebuilds
//! the agent when the kernel programs change. The programs themselves are the `moat` binary.
#![no_std]
