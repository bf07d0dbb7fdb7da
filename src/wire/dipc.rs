//! Placeholder: the dipc layouts are added by their issue.
