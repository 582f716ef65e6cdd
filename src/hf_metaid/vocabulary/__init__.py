"""Growing and sharing an entity vocabulary: new IDs for new entities, the dataset folder and card, the Hub."""
