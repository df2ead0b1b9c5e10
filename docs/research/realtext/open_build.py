"""Rebuild the property/housing extracts in this folder from fetched git mirrors.

Run with any Python 3 (stdlib only):  python build_jsonl.py
Reads blobs straight out of the bare mirrors under /work/.mirror (git show),
writes *.jsonl next to this file.  Every row carries the exact source line.
"""
import csv
import io
import json
import os
import re
import subprocess

OUT = os.environ.get("ANJU_REALTEXT_OUT", "/work/research/open")
MIRROR = "/work/.mirror"


def git_show(repo_dir, commit, path):
    gd = os.path.join(MIRROR, repo_dir, "repo")
    if os.path.isdir(os.path.join(gd, ".git")):
        gd = os.path.join(gd, ".git")
    return subprocess.run(["git", "--git-dir", gd, "show", f"{commit}:{path}"],
                          check=True, capture_output=True).stdout.decode("utf-8")


def write(name, rows):
    with open(os.path.join(OUT, name), "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    print(name, len(rows))


# Topic tags shared by the extracts (first match order = priority).
TAGS = [
    ("noise", r"噪音|噪声|太吵|很吵|吵醒|吵闹|隔音|扰民"),
    ("neighbour", r"邻居|隔壁|邻里"),
    ("rent_landlord", r"房东|二房东|租金|房租|租房|租了|租房子|公寓|搬家|地主说他要提高租金"),
    ("lift", r"电梯"),
    ("water_power_heating", r"停电|停水|断电|漏水|水管|暖气|供暖|热水|空调|灯泡|下水道|马桶|堵塞|堵了"),
    ("repair", r"修理|维修|坏了|故障|锁坏了|门锁"),
    ("fire_safety", r"火灾|着火|失火|消防|灭火|报警|119|保安|门卫"),
    ("parking", r"停车|车位"),
    ("garbage", r"垃圾"),
    ("keys_locks", r"钥匙|锁门|锁上|上锁|反锁"),
    ("property_mgmt", r"物业|业主|小区|居委|管理费|装修"),
]
TAG_RES = [(t, re.compile(p)) for t, p in TAGS]


def tags_of(text):
    return [t for t, r in TAG_RES if r.search(text)]


# ---------------------------------------------------------------- Tatoeba (CC-BY 2.0 FR)
def tatoeba():
    repo, commit, path = "13luoyu/Transformer-machine-translation", \
        "aa43963320ccfacebd1d3542deae559bbca58d03", "cmn.txt"
    text = git_show("13luoyu+Transformer-machine-translation", commit, path)
    drop = re.compile(r"吵架|争吵|吵了起来|垃圾食品|计算机|脚踏车|自行车|手表|时钟|收音机|鞋|照相机|桥处于|抽屉|保险箱|车钥匙|"
                      r"车子|我的车|这辆车|实验室|宾馆|柜台|机器|椅子|阁楼|行李|交通|堵车|这堵墙|吓坏|累坏|脾气|规矩|这肉|衣服|手臂|"
                      r"笔记本电脑|电视|电话|相机|闪光灯|燃油表|汽车|车出了|贩卖机|烤面包机|租了辆|租了一辆|搜查|化学工厂|"
                      r"别吵|别再吵|浴缸|弄坏了什么|遇到了故障|有东西坏了|撞坏")
    keep = re.compile("|".join(p for _, p in TAGS))
    rows, seen = [], set()
    for n, line in enumerate(text.splitlines(), start=1):
        parts = line.lstrip("\ufeff").split("\t")
        if len(parts) < 3:
            continue
        en, zh, attr = parts[0], parts[1], parts[2]
        if not keep.search(zh) or drop.search(zh):
            continue
        tg = tags_of(zh)
        if tg == ["keys_locks"] and not re.search(r"门|房", zh):
            continue  # "I lost my key" style lines only count when a door/home is involved
        if zh in seen:
            continue
        seen.add(zh)
        m = re.search(r"#(\d+) \([^)]*\) & #(\d+)", attr)
        rows.append({
            "text": zh,
            "source": f"{repo}:{path}@{commit} line {n}",
            "licence": "CC-BY 2.0 FR (Tatoeba); attribution: " + attr.replace("CC-BY 2.0 (France) Attribution: ", ""),
            "tatoeba_zh_id": m.group(2) if m else None,
            "en": en,
            "tags": tg,
        })
    write("tatoeba_cmn_property.jsonl", rows)


# ---------------------------------------------------------------- COLD (Apache-2.0)
def cold():
    repo, commit = "thu-coai/COLDataset", "a0c55a945497ab58e94aef491180e1cf88ffb864"
    sel = re.compile(r"房东|二房东|租房|房租|噪音|扰民|装电梯|电梯抽烟|停电|物业|业主|垃圾天天扔|往楼下扔|小区门口|新建小区|"
                     r"供暖|暖气费|保安来处理|没有一个保安|居委会|装修完毕|停车位|停车费")
    rows = []
    for split in ("train", "dev", "test"):
        path = f"COLDataset/{split}.csv"
        raw = git_show("thu-coai+COLDataset", commit, path)
        rd = csv.reader(io.StringIO(raw.lstrip("\ufeff")))
        header = next(rd)
        for rec in rd:
            line = rd.line_num
            d = dict(zip(header, rec))
            t = d["TEXT"]
            if not sel.search(t):
                continue
            row = {
                "text": t,
                "source": f"{repo}:{path}@{commit} line {line}",
                "licence": "Apache-2.0 (repo LICENSE; comments originally from Zhihu/Weibo)",
                "topic": d.get("topic"),
                "offensive_label": d.get("label"),
                "tags": tags_of(t),
            }
            if d.get("fine-grained-label"):
                row["fine_grained_label"] = d["fine-grained-label"]
            rows.append(row)
    write("cold_property.jsonl", rows)


# ---------------------------------------------------------------- ChnSentiCorp_htl_all (no licence: measure only)
def chnsenticorp_htl():
    repo, commit = "SophonPlus/ChineseNlpCorpus", "a0b781d72158bde242c0626c9e354d2b328865ff"
    path = "datasets/ChnSentiCorp_htl_all/ChnSentiCorp_htl_all.csv"
    raw = git_show("SophonPlus+ChineseNlpCorpus", commit, path)
    sel = re.compile(r"噪音|太吵|很吵|吵得|隔音|电梯|停水|停电|没有热水|没热水|热水不|漏水|维修|修理|保安|停车|物业|"
                     r"空调坏|空调不|不制冷|下水道|马桶|堵了|堵塞|坏了|故障")
    rd = csv.reader(io.StringIO(raw.lstrip("\ufeff")))
    header = next(rd)
    rows = []
    for rec in rd:
        if len(rec) < 2:
            continue
        t = rec[1]
        if not sel.search(t):
            continue
        rows.append({
            "text": t,
            "source": f"{repo}:{path}@{commit} line {rd.line_num}",
            "licence": "none found (repo has no LICENSE; data originally ChnSentiCorp by Tan Songbo, Ctrip reviews) - measure only",
            "sentiment_label": int(rec[0]),  # 1 positive, 0 negative
            "tags": tags_of(t),
        })
    write("chnsenticorp_htl_facility.jsonl", rows)


# ---------------------------------------------------------------- FewCLUE TNEWS (no licence: measure only)
def tnews():
    repo, commit = "CLUEbenchmark/FewCLUE", "62a02c6f31cf32814cfe522f78ef088228840f8d"
    files = ["train_few_all", "dev_few_all", "test_public", "unlabeled", "test"]
    sel = re.compile(r"物业|业主|小区|电梯|停车位|维权|开发商|楼盘|烂尾|漏水|交房|房东|租房|消防|噪音")
    rows, seen = [], set()
    for f in files:
        path = f"datasets/tnews/{f}.json"
        for n, line in enumerate(git_show("CLUEbenchmark+FewCLUE", commit, path).splitlines(), start=1):
            if not line.strip():
                continue
            d = json.loads(line)
            t = d["sentence"]
            if t in seen:
                continue
            if d.get("label_desc") == "news_house" or sel.search(t):
                seen.add(t)
                rows.append({
                    "text": t,
                    "source": f"{repo}:{path}@{commit} line {n}",
                    "licence": "none found (README 'License: 正在添加中') - measure only",
                    "tnews_label": d.get("label_desc"),
                    "keywords": d.get("keywords"),
                    "tags": tags_of(t),
                })
    write("fewclue_tnews_property.jsonl", rows)


# ---------------------------------------------------------------- moztw/cc0-sentences zh-TW (CC0)
def cc0_zhtw():
    repo, commit = "moztw/cc0-sentences", "0cd8139d28c7ef15086154d2de4fb8210c8fb16e"
    files = ["book", "chatlogs", "cofacts", "cvsprint_201902", "exam_text", "g0v_slack_rand0m",
             "gov_press_release", "lms", "sayit", "setences", "tg_common_voice", "web_slang"]
    sel = re.compile(r"物業|管委會|管理費|房東|租金|房租|租屋|電梯|噪音|吵鬧|漏水|停電|停水|跳電|維修|修理|停車位|車位|"
                     r"垃圾車|丟垃圾|倒垃圾|消防|火災|報警|警衛|管理員|公寓|鄰居|大樓|社區")
    drop = re.compile(r"垃圾話|垃圾早餐|外送垃圾|垃圾不分|廢文|吵架用語")
    simp = str.maketrans("業會費東鄰擾電梯噪鬧樓區違車場頂頭間寬漏圍災報衛員寓維護倒", "业会费东邻扰电梯噪闹楼区违车场顶头间宽漏围灾报卫员寓维护倒")
    rows = []
    for f in files:
        path = f"zh-TW/{f}.txt"
        for n, line in enumerate(git_show("moztw+cc0-sentences", commit, path).splitlines(), start=1):
            t = line.strip()
            if not t or not sel.search(t) or drop.search(t):
                continue
            rows.append({
                "text": t,
                "source": f"{repo}:{path}@{commit} line {n}",
                "licence": "CC0-1.0 (repo LICENSE.md)",
                "script": "traditional (zh-TW)",
                "tags": tags_of(t.translate(simp)),
            })
    write("cc0_zhtw_property.jsonl", rows)


if __name__ == "__main__":
    tatoeba()
    cold()
    chnsenticorp_htl()
    tnews()
    cc0_zhtw()
