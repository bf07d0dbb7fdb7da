//! Placeholder: the rshm layouts are added by their issue.
