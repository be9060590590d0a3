"""The t-SNE family (the seed's §3): CNN codes embedded in 2-D, as a scatter of thumbnails and a
grid, with kNN accuracy and trustworthiness."""
from ...views import View, register

VIEWS = register(
    View(name="tsne_grid", section=3, title="t-SNE map",
         line="images placed by the similarity of their codes",
         function="techniques.tsne.tsne:tsne_grid", result="techniques.tsne.results:TsneResult",
         kinds=("tsne",), inputs=None, takes="codes", quick={"k": 3}, page="tsne",
         demo="techniques.tsne.demo:tsne_grid",
         exports={"TsneResult": "techniques.tsne.results:TsneResult"}),
)
