//! End-to-end: a real Herald over real gRPC, delivering to a real local
//! HTTP receiver, on SQLite and on PostgreSQL.

mod client;
mod dead_letters;
mod delivery;
mod enqueue;
mod grpcurl;
mod operate;
mod store;
mod watch;
