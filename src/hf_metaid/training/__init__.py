"""Training: the Seq2SeqTrainer subclass and its arguments, the data collator, and the PEFT (LoRA) helpers."""
