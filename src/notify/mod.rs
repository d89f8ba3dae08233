//! Telling everyone: GitHub Discussions and the Docker Hub description, through an outbox.

pub mod templates;
