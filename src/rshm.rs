//! Placeholder: the rshm library is added by its issue.
