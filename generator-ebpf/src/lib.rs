//! Kernel probes for gen. Placeholder: issue 6 ("Kernel probes") adds the C programs under
//! `bpf/`, their committed objects and the aya loader here.
