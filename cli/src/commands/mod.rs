//! One module per subcommand: each turns parsed arguments into work and
//! output. The argument types live in `main.rs`.

pub mod analysis;
pub mod bump;
pub mod image;
