//! Code generated from `proto/` at build time, nested as the packages are (the generated code
//! refers to `common::AuthSignature` relative to `eigenlayer.hourglass.v1`).

#[allow(clippy::all, missing_docs)]
pub mod eigenlayer {
    pub mod hourglass {
        pub mod v1 {
            tonic::include_proto!("eigenlayer.hourglass.v1");
            pub mod common {
                tonic::include_proto!("eigenlayer.hourglass.v1.common");
            }
            pub mod performer {
                tonic::include_proto!("eigenlayer.hourglass.v1.performer");
            }
        }
    }
}

pub use eigenlayer::hourglass::v1 as executor;
pub use eigenlayer::hourglass::v1::{common, performer};
