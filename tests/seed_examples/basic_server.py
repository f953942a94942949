from pathlib import Path
from flwr.server import ServerApp, ServerConfig
from flwr.server.strategy import FedAvg
from flwr.common import Context
from flwr.app import RecordDict
from syft_flwr.fl_orchestrator import syftbox_flwr_server
# Define datasites (data owners)
datasites = [
    "alice@hospital-a.org",
    "bob@hospital-b.org",
    "carol@hospital-c.org",
]
# Create server app with FedAvg strategy
strategy = FedAvg(
    fraction_fit=1.0,  # Use all clients for training
    fraction_evaluate=1.0,  # Use all clients for evaluation
    min_available_clients=3,  # Wait for all clients
)
config = ServerConfig(num_rounds=5)
def server_fn(context: Context):
    return strategy, config
app = ServerApp(server_fn=server_fn)
# Run aggregation server
if __name__ == "__main__":
    context = Context(run_id=0, node_id=0, node_config={}, state=RecordDict(), run_config={})
    updated_context = syftbox_flwr_server(
        server_app=app,
        context=context,
        datasites=datasites,
        app_name="diabetes_prediction",
        project_dir=Path(__file__).parent / "project",
    )
    print(f"Training complete! Final context: {updated_context}")
