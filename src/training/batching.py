"""Batching: dynamic padding (Collator), length-bucketed training batches, length-sorted prediction batches."""
import numpy as np
import torch


def sequence_length(row):
    """Tokens of a row: a list of ids, or a list of chunks for hierarchical inputs."""
    return sum(len(c) for c in row) if row and isinstance(row[0], list) else len(row)


def padded_length(longest, multiple, cap=0):
    """`longest` rounded up to a multiple of `multiple`, never past `cap` (the longest a row can be; 0: no cap)."""
    rounded = -(-longest // multiple) * multiple
    return max(cap, longest) if cap and rounded > cap else rounded


class Collator:
    """Pads a batch to its own longest row (dynamic padding), rounded up to a multiple of `multiple` (at most
    `max_length`); hierarchical rows pad to (chunks, length). Few distinct shapes keep a CPU run's memory flat: with
    a new shape for nearly every batch, minilm-l6 at 16 x 512 grew to 4.8 GB peak RSS in 200 steps, 2.95 GB when
    rounded to 16, at the same speed (bench/throughput.py on imdb5k)."""

    def __init__(self, pad_id, hierarchical=False, multiple=1, max_length=0, padding_side="right"):
        if padding_side not in ("right", "left"):
            raise ValueError(f"padding_side must be right or left, got {padding_side!r}")
        self.pad_id = pad_id
        self.hierarchical = hierarchical
        self.multiple, self.max_length = multiple, max_length
        self.left = padding_side == "left"  # decoders read the same vectors either way (position ids from the mask)

    def place(self, length, n):
        """The slice a row of n tokens fills in a padded row of `length`."""
        return slice(length - n, length) if self.left else slice(0, n)

    def token_types(self, rows, length):
        """1 from each row's `types_from` to its last real token, 0 elsewhere (padding included)."""
        types = torch.zeros((len(rows), length), dtype=torch.long)
        for i, r in enumerate(rows):
            start = getattr(r, "types_from", None)
            if start is not None:
                place = self.place(length, len(r))
                types[i, place.start + start:place.stop] = 1
        return types

    def length(self, longest):
        return padded_length(longest, self.multiple, self.max_length)

    def __call__(self, rows):
        if not self.hierarchical:
            length = self.length(max(len(r) for r in rows))
            ids = torch.full((len(rows), length), self.pad_id, dtype=torch.long)
            mask = torch.zeros((len(rows), length), dtype=torch.long)
            for i, r in enumerate(rows):
                ids[i, self.place(length, len(r))] = torch.tensor(r, dtype=torch.long)
                mask[i, self.place(length, len(r))] = 1
            batch = {"input_ids": ids, "attention_mask": mask}
            if any(getattr(r, "types_from", None) is not None for r in rows):  # sentence pairs (model/fields.py)
                batch["token_type_ids"] = self.token_types(rows, length)
            return batch
        chunks = max(len(r) for r in rows)
        length = self.length(max(len(c) for r in rows for c in r))
        ids = torch.full((len(rows), chunks, length), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows), chunks, length), dtype=torch.long)
        chunk_mask = torch.zeros((len(rows), chunks), dtype=torch.bool)
        for i, r in enumerate(rows):
            for j, c in enumerate(r):
                ids[i, j, self.place(length, len(c))] = torch.tensor(c, dtype=torch.long)
                mask[i, j, self.place(length, len(c))] = 1
                chunk_mask[i, j] = True
        return {"input_ids": ids, "attention_mask": mask, "chunk_mask": chunk_mask}


def bucketed_batches(lengths, batch_size, rng, bucket_batches=50):
    """Shuffled batches of similar length: shuffle, sort within mega-batches of `bucket_batches` batches,
    cut, then shuffle the batch order. Returns positions into `lengths`."""
    order = rng.permutation(len(lengths))
    mega = batch_size * bucket_batches
    batches = []
    for start in range(0, len(order), mega):
        part = order[start:start + mega]
        part = part[np.argsort(-lengths[part], kind="stable")]
        batches.extend(part[i:i + batch_size] for i in range(0, len(part), batch_size))
    rng.shuffle(batches)
    return batches


def sorted_batches(lengths, batch_size):
    order = np.argsort(-np.asarray(lengths), kind="stable")
    return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]


def to_device(batch, device):
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}
