//! The Merkle tree over an export's included events (RFC 6962 §2.1 hashing): a regulator holding
//! the root from a signed manifest checks that one event is in the export from its record hash and
//! a path of sibling hashes, without the other events.

use sha2::{Digest, Sha256};

pub type Hash = [u8; 32];

fn leaf(record_hash: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([0u8]);
    h.update(record_hash);
    h.finalize().into()
}

fn node(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([1u8]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// The largest power of two below `n` (n ≥ 2): where RFC 6962 splits a tree.
fn split(n: usize) -> usize {
    let mut k = 1;
    while k * 2 < n {
        k *= 2;
    }
    k
}

/// The root over `record_hashes`, in order (the empty tree's root is SHA-256 of nothing).
pub fn root(record_hashes: &[Hash]) -> Hash {
    match record_hashes.len() {
        0 => Sha256::digest([]).into(),
        1 => leaf(&record_hashes[0]),
        n => {
            let k = split(n);
            node(&root(&record_hashes[..k]), &root(&record_hashes[k..]))
        }
    }
}

/// The same root, one leaf at a time in `O(log n)` memory: the perfect subtrees so far, largest
/// first (a build streams millions of events).
#[derive(Default)]
pub struct Builder {
    stack: Vec<(Hash, u64)>,
    count: u64,
}

impl Builder {
    pub fn push(&mut self, record_hash: &Hash) {
        let mut top = (leaf(record_hash), 1u64);
        while let Some(&(left, size)) = self.stack.last() {
            if size != top.1 {
                break;
            }
            self.stack.pop();
            top = (node(&left, &top.0), size * 2);
        }
        self.stack.push(top);
        self.count += 1;
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    pub fn root(&self) -> Hash {
        let mut subtrees = self.stack.iter().rev();
        let Some(&(mut root, _)) = subtrees.next() else { return Sha256::digest([]).into() };
        for (left, _) in subtrees {
            root = node(left, &root);
        }
        root
    }
}

/// The audit path of leaf `index`: sibling hashes from the leaf up.
pub fn path(record_hashes: &[Hash], index: usize) -> Vec<Hash> {
    let n = record_hashes.len();
    if n <= 1 || index >= n {
        return Vec::new();
    }
    let k = split(n);
    if index < k {
        let mut p = path(&record_hashes[..k], index);
        p.push(root(&record_hashes[k..]));
        p
    } else {
        let mut p = path(&record_hashes[k..], index - k);
        p.push(root(&record_hashes[..k]));
        p
    }
}

/// Whether `path` leads from `record_hash`, leaf `index` of `count`, to `root` (RFC 9162 §2.1.3.2).
pub fn verify(record_hash: &Hash, index: u64, count: u64, path: &[Hash], expected_root: &Hash) -> bool {
    if index >= count {
        return false;
    }
    let (mut f_n, mut s_n) = (index, count - 1);
    let mut r = leaf(record_hash);
    for p in path {
        if s_n == 0 {
            return false;
        }
        if f_n & 1 == 1 || f_n == s_n {
            r = node(p, &r);
            while f_n & 1 == 0 && f_n != 0 {
                f_n >>= 1;
                s_n >>= 1;
            }
        } else {
            r = node(&r, p);
        }
        f_n >>= 1;
        s_n >>= 1;
    }
    s_n == 0 && &r == expected_root
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn hashes(n: usize) -> Vec<Hash> {
        (0..n).map(|i| Sha256::digest(i.to_le_bytes()).into()).collect()
    }

    #[test]
    fn a_tree_of_one_is_its_leaf_and_the_empty_tree_hashes_nothing() {
        let one = hashes(1);
        assert_eq!(root(&one), leaf(&one[0]));
        assert_eq!(hex::encode(root(&[])), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    }

    proptest! {
        #[test]
        fn the_streaming_root_is_the_tree_root(n in 0usize..300) {
            let leaves = hashes(n);
            let mut b = Builder::default();
            for l in &leaves {
                b.push(l);
            }
            prop_assert_eq!(b.root(), root(&leaves));
        }

        #[test]
        fn every_leaf_proves_its_inclusion_and_no_other_does(n in 1usize..70, pick in 0usize..70) {
            let leaves = hashes(n);
            let r = root(&leaves);
            let i = pick % n;
            let p = path(&leaves, i);
            prop_assert!(verify(&leaves[i], i as u64, n as u64, &p, &r));
            // Another record, or the right record at another place, does not verify.
            let stranger: Hash = Sha256::digest(b"not in the export").into();
            prop_assert!(!verify(&stranger, i as u64, n as u64, &p, &r));
            if n > 1 {
                let j = (i + 1) % n;
                prop_assert!(!verify(&leaves[i], j as u64, n as u64, &p, &r));
            }
        }
    }
}
