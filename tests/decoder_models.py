"""Tiny random-weight decoder LLMs (Llama with an untied LM head, Qwen2, Gemma-2 with soft-capping) as local model
folders, with a byte-level BPE tokenizer built here that has no pad token (as most decoders ship)."""
import torch
import transformers as hf

SIZE = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
            intermediate_size=64, max_position_embeddings=256)
SPECIALS = ["<s>", "</s>", "<unk>"]


def bpe_tokenizer(texts):
    from tokenizers import ByteLevelBPETokenizer
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(texts, vocab_size=400, min_frequency=1, show_progress=False, special_tokens=SPECIALS)
    return hf.PreTrainedTokenizerFast(tokenizer_object=bpe._tokenizer, bos_token="<s>", eos_token="</s>",
                                      unk_token="<unk>")


def config_of(family, tok):
    """Room past the tokenizer: Qwen2Tokenizer adds a pad token <|endoftext|> after the trained vocabulary."""
    ids = dict(vocab_size=len(tok) + 48, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)
    if family == "llama":
        return hf.LlamaConfig(**SIZE, **ids, tie_word_embeddings=False)
    if family == "gpt2":  # absolute positions: left padding needs position ids from the mask (RoPE does not)
        return hf.GPT2Config(n_embd=32, n_layer=2, n_head=4, n_positions=256, **ids)
    if family == "qwen2":
        return hf.Qwen2Config(**SIZE, **ids, tie_word_embeddings=True)
    return hf.Gemma2Config(**SIZE, **ids, head_dim=8, query_pre_attn_scalar=8, sliding_window=64,
                           final_logit_softcapping=30.0, attn_logit_softcapping=50.0, tie_word_embeddings=True)


FAMILIES = ("llama", "qwen2", "gemma2")


def build_decoder(family, folder, texts, seed=0):
    """folder/ with config.json, model.safetensors (the causal LM, LM head included) and the tokenizer."""
    folder.mkdir(parents=True, exist_ok=True)
    tok = bpe_tokenizer(texts)
    torch.manual_seed(seed)
    hf.AutoModelForCausalLM.from_config(config_of(family, tok)).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder
