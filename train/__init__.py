"""Training (`csvr pretrain`, `csvr finetune`): CSVR pretraining and fine-tuning streamed from a store."""
