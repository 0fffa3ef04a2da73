//! File transfer on this computer (`doorman cp`, the console's Files
//! view): [`place`] confines every path to the folders the owner shares
//! and writes files whole or not at all.

// The service that uses it (issue 27) lands in steps; until then only
// its tests do.
#[allow(dead_code)]
pub mod place;

#[cfg(test)]
mod tests;
