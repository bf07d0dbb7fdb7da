//! Placeholder: the shmem library is added by its issue.
