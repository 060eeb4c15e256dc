//! The chat-client binary against a real server.
