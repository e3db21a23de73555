"""Dagster assets: one module per stage of the graph; each thin, the ML lives in ml_core."""

from assets.autoencoder import autoencoder
from assets.dataset_tokens import dataset_tokens
from assets.embedding_probes import embedding_probes
from assets.ground_truth_ranks import ground_truth_ranks
from assets.image_folders import image_folders
from assets.model_checkpoints import model_checkpoints
from assets.model_costs import model_costs
from assets.model_embeddings import model_embeddings
from assets.model_parameters import model_parameters
from assets.model_recommendations import model_recommendations
from assets.model_source_tokens import model_source_tokens
from assets.ranker_evaluation import ranker_evaluation
from assets.ranking_transformer import ranking_transformer
from assets.result_files import result_files
from assets.result_history import result_history
from assets.transfer_performance import transfer_performance
from assets.transferability_scores import transferability_scores

ALL_ASSETS = [
    model_parameters,
    model_costs,
    model_source_tokens,
    autoencoder,
    model_embeddings,
    dataset_tokens,
    transfer_performance,
    result_history,
    ground_truth_ranks,
    embedding_probes,
    ranking_transformer,
    model_recommendations,
    transferability_scores,
    ranker_evaluation,
]

# Observable source assets: the user's files at the root of the lineage (observed, never materialized).
ALL_SOURCES = [model_checkpoints, image_folders, result_files]

__all__ = ["ALL_ASSETS", "ALL_SOURCES", *[a.key.path[-1] for a in ALL_ASSETS + ALL_SOURCES]]
