"""The words that carry sentiment in what residents, self-media and news write about a property
company, and the cues that change what those words mean (negation, degree, contrast, sarcasm,
notices and questions).

General-purpose lexicons were built on product reviews: they score a water-cut notice negative
(停水, 维修) and miss 不作为 or 霸王条款. These lists are written for this domain; the classifier
(sentiment.model) learns how much each cue weighs from labelled posts.
"""

from __future__ import annotations


def words(text: str) -> frozenset[str]:
    return frozenset(text.split())


# Words that say something went wrong for residents or for the company's name.
NEGATIVE = words(
    """
    漏水 渗水 返潮 发霉 霉斑 积水 堵塞 反味 臭味 异味 发黄 噪音 扰民 吵死 乱收费 多收 乱收 巧立名目
    强制 强收
    霸王条款 不作为 推诿 推脱 踢皮球 敷衍 搪塞 拖延 拖着 拖了 没人管 无人管 无人问津 没人理 不理
    不管 不回 置之不理
    维权 拉横幅 横幅 上访 集体 投诉 投诉无门 曝光 举报 12345 媒体 记者 起诉 诉讼 仲裁 判决 罚款 处罚
    约谈 整改
    坏了 故障 停运 困人 被困 关在 砸伤 砸坏 受伤 摔伤 死亡 身亡 事故 隐患 失火 起火 燃气 泄漏 坠物 高空抛物
    涨价 乱涨 暴涨 天价 贵 坑 坑人 黑心 无良 垃圾 脏 乱 差 臭 破 烂 离谱 过分 恶心 寒心 失望 绝望 愤怒 气愤
    生气 崩溃 无语 醉了 服了 栓Q 差评 垃圾物业 黑物业 物业费白交 白交 骗 骗子 忽悠 威胁 恐吓 打人
    辱骂 态度差
    态度恶劣 甩脸子 冷漠 失职 渎职 违规 违建 私搭 侵占 占用 挪用 霸占 毁绿 偷 丢失 被盗 盗窃 失窃
    不安全 不放心
    不公开 不透明 糊弄 拖欠 欠薪 断水 断电 停水停电 不满 不满意 退钱 赔偿 索赔 讨说法 说法 凭什么 难道 到底
    还有没有 谁负责 没人负责 忍无可忍 受够 够了 一再 多次 反复 屡次 始终 迟迟 至今 依然 仍然 还是没
    严重影响 影响休息 影响生活 无法休息 夜不能寐 苦不堪言 不方便 困扰 霸道 野蛮 蛮横 走投无路 无奈 折磨 后怕
    担心 担忧 害怕 提心吊胆 不堪设想 无作为 不到位 不合理 不公 欺骗 欺诈 虚假 违法 违约 擅自 私自 强行 侵害
    侵犯 损害 损失 缺位 混乱 乱停 乱放 匮乏 远远不能 反对 强烈反对 抱怨 质疑 不堪 恳请 请求 诉求 求助 无果
    没有回应 没回应 无人应答 打不通 爬楼 吓死 吓人 吓出 冷汗 要命 心惊胆战 胆战心惊 惊魂 差劲 太差
    烦恼 苦恼 郁闷 窝火 揪心 闹心 糟心 堵心 添堵 头疼 难受 不爽 心寒 憋屈 委屈 无助 不安 恐慌 焦虑 担惊受怕
    恶劣 侮辱 不尊重 不人性化 不负责任 视而不见 扯皮 怨声载道 叫苦不迭 叫苦 吐槽 怨言 不讲理 欺负 刁难
    """
)

# Words that say residents are satisfied, or that the company did well.
POSITIVE = words(
    """
    感谢 谢谢 多谢 感激 表扬 表扬信 锦旗 点赞 好评 给力 靠谱 负责 尽职 尽责 及时 迅速 很快 马上 贴心
    暖心 温暖
    用心 细心 耐心 热心 热情 专业 认真 周到 到位 满意 放心 安心 省心 舒心 干净 整洁 漂亮 良心
    良心物业 优秀 称赞
    赞 棒 好评如潮 刮目相看 辛苦 辛苦了 有心 有心了 值得 值 五星 满分 yyds 绝绝子 效率高 解决了
    已解决 修好了
    修好 退还 退款 道歉 改进 提升 改善 越来越好 焕然一新 一流 放心了 感动 佩服 赞赏 赞扬 欣慰 满意度
    拾金不昧 失而复得 完璧归赵 物归原主 高尚 品格 美德 正能量 雷锋 助人为乐 乐于助人 热心肠 有求必应 勤勤恳恳
    兢兢业业 任劳任怨 娴熟 利索 广泛好评 亮堂堂 暖暖的 感谢信 致谢 送锦旗 为民 急业主之急 想业主所想
    守护 点个赞
    高兴 开心 喜笑颜开 笑开颜 乐呵呵 美滋滋 乐开了花 赞不绝口 交口称赞 拍手称快 拍手叫好 竖起大拇指 好样的
    感恩 感念 和谐 融洽 惠民 便民 暖人心 雪中送炭 及时雨 尽心尽力 无微不至 一举两得 称心 如愿 心声 定心丸
    """
)

# A negator before a polar word turns it around (没有乱收费, 不满意 → 满意 negated).
NEGATORS = words(
    """
    不 没 没有 无 非 别 未 勿 不是 不会 不再 从不 从没 从来不 从来没 毫无 并不 并没有 一点都不 一点也不
    """
)

# How strongly a polar word is meant (非常满意 > 满意 > 有点满意).
DEGREE = {
    "极其": 2.0,
    "极度": 2.0,
    "极": 2.0,
    "最": 2.0,
    "太": 1.8,
    "非常": 1.8,
    "特别": 1.8,
    "十分": 1.6,
    "超级": 1.8,
    "超": 1.6,
    "巨": 1.6,
    "相当": 1.5,
    "真": 1.3,
    "真是": 1.3,
    "好": 1.2,
    "很": 1.4,
    "挺": 1.2,
    "比较": 1.0,
    "还": 0.8,
    "较": 0.9,
    "有点": 0.6,
    "有些": 0.6,
    "稍微": 0.5,
    "略": 0.5,
    "一点": 0.5,
}

# The clause after these decides (虽然贵了点，但是服务没话说 → positive).
CONTRAST = ("但是", "但", "可是", "可", "却", "然而", "不过", "结果", "只是", "就是")

# Irony: praise that means the opposite when it comes with a complaint.
SARCASM = (
    "呵呵",
    "真是好物业",
    "好物业啊",
    "真是服了",
    "不愧是",
    "厉害了",
    "佩服佩服",
    "真行",
    "真能",
    "谢谢物业让",
    "感谢物业让",
    "托物业的福",
    "体验了",
    "真是太好了",
    "🙂",
    "😊",
    "🙃",
    "“到位”",
    '"到位"',
    "“处理”",
    '"处理"',
    "“服务”",
    '"服务"',
    "“温馨提示”",
    '"温馨提示"',
)

# Announcements: outages and works are news to residents, not complaints.
NOTICE = (
    "通知",
    "公告",
    "温馨提示",
    "告知",
    "敬请",
    "请提前",
    "提前储水",
    "届时",
    "预计",
    "恢复供",
    "给您带来不便",
    "敬请谅解",
    "特此",
    "公示",
    "请各位",
    "各位业主",
    "请广大",
    "报名",
    "招聘",
    "演练",
    "年检",
    "维保",
    "检测",
    "例行",
    "计划",
    "将于",
    "期间",
    "注意安全",
    "请留意",
)

# Asking for information (物业费怎么交？) is neutral; asking to accuse (干什么用的？) is not.
QUESTION = (
    "请问",
    "怎么",
    "如何",
    "在哪",
    "哪里",
    "哪儿",
    "几点",
    "多少",
    "能不能",
    "可以吗",
    "可不可以",
    "是否",
    "吗",
    "呢",
    "？",
    "?",
    "求问",
    "有谁知道",
    "有没有人知道",
)
RHETORICAL = (
    "凭什么",
    "干什么用",
    "干嘛用",
    "有什么用",
    "还有没有",
    "到底",
    "难道",
    "谁来管",
    "谁负责",
    "管不管",
    "还要等",
    "要等到",
    "非要",
    "就这",
    "这叫",
    "这就叫",
    "就是这样",
    "是为了什么",
    "交了钱",
)

# Words jieba should keep whole (its general dictionary splits several of them).
USER_WORDS = tuple(
    sorted(
        {w for w in NEGATIVE | POSITIVE if len(w) > 1}
        | {
            "物业费",
            "维修基金",
            "业委会",
            "业主大会",
            "二次供水",
            "公摊",
            "电梯困人",
            "高空抛物",
            "拉横幅",
            "装修噪音",
            "停车费",
            "车位",
            "门禁",
            "物业公司",
            "物业经理",
            "管家",
            "保洁",
            "保安",
            "工单",
            "报修",
        }
    )
)

# Whose attitude is it? An official reply restates the complaint it answers ("您反映的噪音扰民
# 问题…") and a news report quotes the people in it: their words are not the writer's attitude.
# The formulas an official reply opens with: one is enough to tell a reply.
REPLY_OPENINGS = (
    "经核实",
    "经调查",
    "经查",
    "您反映的",
    "您所反映",
    "来信收悉",
    "网友您好",
    "答复如下",
    "现答复",
    "回复如下",
    "已责成",
    "特此回复",
)
REPLY = (
    *REPLY_OPENINGS,
    "经了解",
    "现将",
    "已要求",
    "已督促",
    "下一步",
    "感谢您对",
    "感谢您的",
    "如有疑问",
    "请拨打",
    "联系电话",
)
# A journalist's or an office's voice. The strong markers name the reporter; the weak ones
# ("近日", "表示") are words residents write too ("昨日物业又停水", "我表示不满"), so they count
# only where the writer does not speak as themselves (see FIRST_PERSON).
REPORT_STRONG = (
    "记者",
    "据悉",
    "据了解",
    "报道",
    "获悉",
    "通讯员",
    "介绍说",
    "据介绍",
    "相关负责人",
    "工作人员称",
)
REPORT_WEAK = (
    "日前",
    "近日",
    "昨日",
    "表示",
)
# The writer speaking as themselves; an office's "我局", "我司" is not a resident's voice.
FIRST_PERSON = r"我们|咱们|咱|俺|本人|我(?![局司办委处院部厅站所县市区镇乡街方会单])"
# Courtesy a complaint is wrapped in ("尊敬的领导…谢谢"): no praise of anyone.
POLITE = (
    r"尊敬的[^，,：:！!。\s]{0,12}",
    r"(您|你们)好",
    r"(谢谢|感谢)(您|你们|领导)?(的)?(关注|支持|理解|配合|百忙之中|阅读|回复)?[！!。]?$",
    r"(谢谢|感谢)(您|你们|领导)(的)?(关注|支持|理解|配合|百忙之中|阅读|回复)",
    r"此致敬礼",
    r"盼复",
    r"望(回复|答复|采纳)",
)
# In a reply, the complaint restated.
RESTATED = r"(您|网友|来信人)(所)?(反映|咨询|投诉)(的)?[^。！？!?]{0,80}?(问题|情况|事项|一事)"

# A petition asks someone in charge to put something right ("…望解决", "恳请相关部门督促整改"): its
# writer is dissatisfied even when every sentence is polite.
PETITION = (
    r"(恳请|请求|呼吁|强烈要求|强烈建议|强烈反对)",
    r"望.{0,6}(解决|处理|重视|整改|督促|查处|回复|答复)",
    r"希望.{0,16}(解决|处理|重视|整改|督促|查处|监管|尽快|早日)",
    r"(相关|有关|职能)部门",
    r"(严重|长期|一直).{0,6}(影响|困扰|存在)",
    r"(何时|什么时候)(才)?(能|可以)?(解决|改善|处理|修)",
)
