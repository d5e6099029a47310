//! Filled in once the CXone emulator lands.
